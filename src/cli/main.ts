/**
 * The coffer program: `coffer [at LOCATION] COMMAND ...`. Builds the root
 * command, runs it once, and maps every error to an exit code (the only
 * place that does).
 */
import { Command, CommanderError } from "commander";
import { CofferError, ExitCode } from "../util/errors.js";
import { backupCommand } from "./commands/backup.js";
import { catCommand } from "./commands/cat.js";
import { checkCommand } from "./commands/check.js";
import { connectorsCommand } from "./commands/connectors.js";
import { createCommand } from "./commands/create.js";
import { infoCommand } from "./commands/info.js";
import { lsCommand } from "./commands/ls.js";
import { restoreCommand } from "./commands/restore.js";
import { type Context, type GlobalOptions, loadRegistry } from "./context.js";
import { pkgCommand } from "./commands/pkg.js";
import { repairCommand } from "./commands/repair.js";
import { say } from "./format.js";

export const EXIT_HELP = `
Repository: \`at LOCATION\` before the command, else $COFFER_REPOSITORY, else ~/.coffer.
Passphrase: --keyfile FILE, else $COFFER_PASSPHRASE, else a prompt on a terminal.

Exit codes:
  0    success
  1    error
  2    usage error (also: no command given)
  3    finished, but some entries failed (they are named on stderr)
  10   no repository at the location
  11   repository locked by another process
  12   wrong passphrase
  130  interrupted
`;

export function buildProgram(ctx: () => Context, setExit: (code: number) => void): Command {
  const program = new Command("coffer")
    .description("deduplicating, encrypted backups")
    .usage("[at LOCATION] <command> [options]")
    .option("--keyfile <file>", "read the passphrase from a file")
    .option("--store-opt <key=value>", "configure the repository's store (repeatable; see `coffer connectors`)", (v: string, p: string[] | undefined) => [...(p ?? []), v])
    .option("--debug", "print stack traces on errors")
    .addHelpText("after", EXIT_HELP)
    .showHelpAfterError(false)
    .configureOutput({ outputError: sayEach })
    .exitOverride();
  const done = (code: number) => setExit(code);
  for (const c of [
    createCommand(ctx),
    backupCommand(ctx, done),
    lsCommand(ctx, done),
    restoreCommand(ctx, done),
    catCommand(ctx),
    infoCommand(ctx),
    checkCommand(ctx, done),
    repairCommand(ctx, done),
    connectorsCommand(ctx),
    pkgCommand(ctx),
  ]) {
    configure(c);
    program.addCommand(c);
  }
  return program;
}

/** Errors thrown, not exits, and commander's messages made safe, down to `pkg create`. */
function configure(c: Command): void {
  c.exitOverride();
  c.configureOutput({ outputError: sayEach });
  c.addHelpText("after", EXIT_HELP);
  for (const sub of c.commands) configure(sub);
}

export async function main(argv: string[]): Promise<void> {
  const args = [...argv];
  let at: string | undefined;
  // `coffer [global options] at LOCATION command ...`
  let i = 0;
  while (i < args.length && args[i]!.startsWith("-")) i += args[i] === "--keyfile" || args[i] === "--store-opt" ? 2 : 1;
  if (args[i] === "at") {
    at = args[i + 1];
    if (at === undefined || at === "") {
      say(process.stderr, "coffer: `at` needs a LOCATION");
      process.exit(ExitCode.USAGE);
    }
    args.splice(i, 2);
  }
  // A closed pipe (`coffer ls | head`) ends the program quietly.
  process.stdout.on("error", (e: NodeJS.ErrnoException) => {
    if (e.code === "EPIPE") process.exit(ExitCode.OK);
  });
  const controller = new AbortController();
  let interrupts = 0;
  const onSignal = () => {
    if (++interrupts > 1) process.exit(ExitCode.INTERRUPTED);
    controller.abort(new CofferError("INTERRUPTED", "interrupted"));
  };
  // After an interrupt, operations still in flight fail with it; nobody needs to hear.
  process.on("unhandledRejection", (e) => {
    if (controller.signal.aborted) return;
    process.exitCode = report(e, true);
    process.exit();
  });
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);

  let exitCode: number = ExitCode.OK;
  let globals: GlobalOptions = {};
  const registry = await loadRegistry(process.env, (m) => say(process.stderr, `coffer: warning: ${m}`));
  const ctx = (): Context => ({
    globals: { ...globals, at },
    signal: controller.signal,
    stdout: process.stdout,
    stderr: process.stderr,
    env: process.env,
    registry,
  });
  const program = buildProgram(ctx, (c) => (exitCode = c));
  program.hook("preAction", (cmd) => {
    globals = cmd.opts() as GlobalOptions;
  });
  try {
    await program.parseAsync(args, { from: "user" });
  } catch (e) {
    // After Ctrl-C, whatever failed failed because of it.
    if (controller.signal.aborted && !(e instanceof CommanderError)) {
      say(process.stderr, "coffer: interrupted");
      exitCode = ExitCode.INTERRUPTED;
    } else exitCode = report(e, Boolean(globals.debug || args.includes("--debug")));
  }
  if (controller.signal.aborted && exitCode === ExitCode.OK) exitCode = ExitCode.INTERRUPTED;
  process.exitCode = exitCode;
  await new Promise<void>((r) => process.stdout.write("", () => r()));
  process.exit(exitCode);
}

/** commander's error messages (which may quote what was typed), each line made safe like every other human line. */
function sayEach(text: string, write: (s: string) => void): void {
  for (const line of text.replace(/\n$/, "").split("\n")) say({ write }, line);
}

function report(e: unknown, debug: boolean): number {
  if (e instanceof CommanderError) {
    if (e.code === "commander.helpDisplayed" || e.code === "commander.version") return ExitCode.OK;
    // `coffer` (or `coffer pkg`) without a command: the help went to stderr, and that is a usage error.
    if (e.code === "commander.help") return e.exitCode === 0 ? ExitCode.OK : ExitCode.USAGE;
    if (e.code === "commander.executeSubCommandAsync") return ExitCode.OK;
    // commander already printed its message.
    return ExitCode.USAGE;
  }
  if (e instanceof CofferError) {
    say(process.stderr, `coffer: ${e.message}`);
    if (debug && e.stack) process.stderr.write(`${e.stack}\n`);
    return e.exitCode;
  }
  const err = e as NodeJS.ErrnoException;
  say(process.stderr, `coffer: ${err?.message ?? String(e)}`);
  if (debug && err?.stack) process.stderr.write(`${err.stack}\n`);
  return ExitCode.ERROR;
}
