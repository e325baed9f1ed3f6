/**
 * One run of the CLI: `run(argv, io)` parses the arguments, runs the
 * command on the run's streams, environment and directory, and returns its
 * exit code, every error reported on io.stderr and mapped by
 * ./exit-codes.ts. It never exits the process and installs no handlers:
 * ./main.ts does that for bin/coffer.js, and tests call run() in-process.
 */
import { CommanderError } from "commander";
import { CofferError } from "../util/errors.js";
import { type CliIo, type Context, type GlobalOptions, loadRegistry, scratchDir } from "./context.js";
import { ExitCode, exitCodeOf } from "./exit-codes.js";
import { say } from "./format.js";
import { buildProgram } from "./program.js";

export async function run(argv: readonly string[], io: CliIo): Promise<ExitCode> {
  const args = [...argv];
  let at: string | undefined;
  // `coffer [global options] at LOCATION command ...`
  let i = 0;
  while (i < args.length && args[i]!.startsWith("-")) i += args[i] === "--keyfile" || args[i] === "--store-opt" ? 2 : 1;
  if (args[i] === "at") {
    at = args[i + 1];
    if (at === undefined || at === "") {
      say(io.stderr, "coffer: `at` needs a LOCATION");
      return ExitCode.USAGE;
    }
    args.splice(i, 2);
  }
  let exitCode: ExitCode = ExitCode.OK;
  let globals: GlobalOptions = {};
  try {
    const registry = await loadRegistry(io, (m) => say(io.stderr, `coffer: warning: ${m}`));
    const tmpDir = scratchDir(io.env);
    const ctx = (): Context => ({ ...io, globals: { ...globals, at }, registry, tmpDir });
    const program = buildProgram(ctx, (c) => (exitCode = c), io);
    program.hook("preAction", (cmd) => {
      globals = cmd.opts() as GlobalOptions;
    });
    await program.parseAsync(args, { from: "user" });
  } catch (e) {
    // After Ctrl-C, whatever failed failed because of it.
    if (io.signal.aborted && !(e instanceof CommanderError)) {
      say(io.stderr, "coffer: interrupted");
      exitCode = ExitCode.INTERRUPTED;
    } else exitCode = reportError(e, io.stderr, Boolean(globals.debug || args.includes("--debug")));
  }
  if (io.signal.aborted && exitCode === ExitCode.OK) exitCode = ExitCode.INTERRUPTED;
  return exitCode;
}

/** Says what went wrong on `stderr` (commander has said it already for its own errors) and gives the exit code it ends the run with. */
export function reportError(e: unknown, stderr: NodeJS.WritableStream, debug: boolean): ExitCode {
  if (e instanceof CommanderError) {
    if (e.code === "commander.helpDisplayed" || e.code === "commander.version") return ExitCode.OK;
    // `coffer` (or `coffer pkg`) without a command: the help went to stderr, and that is a usage error.
    if (e.code === "commander.help") return e.exitCode === 0 ? ExitCode.OK : ExitCode.USAGE;
    if (e.code === "commander.executeSubCommandAsync") return ExitCode.OK;
    // commander already printed its message.
    return ExitCode.USAGE;
  }
  if (e instanceof CofferError) {
    say(stderr, `coffer: ${e.message}`);
    if (debug && e.stack) stderr.write(`${e.stack}\n`);
    return exitCodeOf(e.code);
  }
  const err = e as NodeJS.ErrnoException;
  say(stderr, `coffer: ${err?.message ?? String(e)}`);
  if (debug && err?.stack) stderr.write(`${err.stack}\n`);
  return ExitCode.ERROR;
}
