/**
 * The commander program: `coffer [at LOCATION] COMMAND ...`, every command
 * and subcommand set to throw instead of exit and to write to the run's
 * streams, with the help that ends in the exit codes (./exit-codes.ts).
 */
import { Command, type OutputConfiguration } from "commander";
import { backupCommand } from "./commands/backup.js";
import { catCommand } from "./commands/cat.js";
import { checkCommand } from "./commands/check.js";
import { connectorsCommand } from "./commands/connectors.js";
import { createCommand } from "./commands/create.js";
import { diffCommand } from "./commands/diff.js";
import { infoCommand } from "./commands/info.js";
import { keyCommand } from "./commands/key.js";
import { locateCommand } from "./commands/locate.js";
import { lsCommand } from "./commands/ls.js";
import { maintenanceCommand } from "./commands/maintenance.js";
import { pkgCommand } from "./commands/pkg.js";
import { pruneCommand } from "./commands/prune.js";
import { repairCommand } from "./commands/repair.js";
import { restoreCommand } from "./commands/restore.js";
import { syncCommand } from "./commands/sync.js";

import { rmCommand } from "./commands/rm.js";
import { undeleteCommand } from "./commands/undelete.js";
import type { CliIo, Context } from "./context.js";
import { type ExitCode, exitCodesHelp } from "./exit-codes.js";
import { say } from "./format.js";

/** What `--help` adds after every command's own help. */
export const EXIT_HELP = `
Repository: \`at LOCATION\` before the command, else $COFFER_REPOSITORY, else ~/.coffer.
Passphrase: --keyfile FILE, else $COFFER_PASSPHRASE, else a prompt on a terminal.

${exitCodesHelp()}
`;

/** The program of one run: `ctx` is called when a command runs, `setExit` takes the code a command returns. */
export function buildProgram(ctx: () => Context, setExit: (code: ExitCode) => void, io: Pick<CliIo, "stdout" | "stderr">): Command {
  const output = outputTo(io);
  const program = new Command("coffer")
    .description("deduplicating, encrypted backups")
    .usage("[at LOCATION] <command> [options]")
    .option("--keyfile <file>", "read the passphrase from a file")
    .option("--store-opt <key=value>", "configure the repository's store (repeatable; see `coffer connectors`)", (v: string, p: string[] | undefined) => [...(p ?? []), v])
    .option("--debug", "print stack traces on errors")
    .addHelpText("after", EXIT_HELP)
    .showHelpAfterError(false)
    .configureOutput(output)
    .exitOverride();
  for (const c of [
    createCommand(ctx),
    backupCommand(ctx, setExit),
    lsCommand(ctx, setExit),
    restoreCommand(ctx, setExit),
    catCommand(ctx),
    infoCommand(ctx),
    checkCommand(ctx, setExit),
    diffCommand(ctx, setExit),
    locateCommand(ctx, setExit),
    repairCommand(ctx, setExit),
    maintenanceCommand(ctx, setExit),
    syncCommand(ctx, setExit),

    rmCommand(ctx, setExit),
    undeleteCommand(ctx),
    connectorsCommand(ctx),
    keyCommand(ctx),
    pkgCommand(ctx),
    pruneCommand(ctx, setExit),
  ]) {
    configure(c, output);
    program.addCommand(c);
  }
  return program;
}

/** Errors thrown, not exits, and commander's output on the run's streams, made safe, down to `pkg create`. */
function configure(c: Command, output: OutputConfiguration): void {
  c.exitOverride();
  c.configureOutput(output);
  c.addHelpText("after", EXIT_HELP);
  for (const sub of c.commands) configure(sub, output);
}

/**
 * commander's output on the run's streams: help as it is (wrapped to a
 * terminal's width, else 80 columns; coffer's help has no colours), error
 * messages (which may quote what was typed) line by line through say().
 */
function outputTo(io: Pick<CliIo, "stdout" | "stderr">): OutputConfiguration {
  // commander's types say number, but it takes undefined as "not a terminal".
  const columns = (s: object) => ((s as { isTTY?: boolean }).isTTY ? (s as { columns?: number }).columns : undefined) as number;
  return {
    writeOut: (s) => void io.stdout.write(s),
    writeErr: (s) => void io.stderr.write(s),
    getOutHelpWidth: () => columns(io.stdout),
    getErrHelpWidth: () => columns(io.stderr),
    getOutHasColors: () => false,
    getErrHasColors: () => false,
    outputError: sayEach,
  };
}

function sayEach(text: string, write: (s: string) => void): void {
  for (const line of text.replace(/\n$/, "").split("\n")) say({ write }, line);
}
