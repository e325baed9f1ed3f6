/**
 * The process around a run (bin/coffer.js): the process's streams,
 * environment and directory given to run(), SIGINT/SIGTERM as its
 * cancellation (a second signal exits at once), a closed stdout (EPIPE) as
 * a quiet end, an unhandled rejection reported, and process.exit with the
 * code run() returned once stdout is flushed.
 */
import { CofferError } from "../util/errors.js";
import { ExitCode } from "./exit-codes.js";
import { processEnviron } from "./passphrase.js";
import { reportError, run } from "./run.js";

export async function main(argv: string[]): Promise<void> {
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
    process.exitCode = reportError(e, process.stderr, true);
    process.exit();
  });
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);

  const exitCode = await run(argv, {
    stdin: process.stdin,
    stdout: process.stdout,
    stderr: process.stderr,
    env: process.env,
    cwd: process.cwd(),
    signal: controller.signal,
    environ: processEnviron,
  });
  process.exitCode = exitCode;
  await new Promise<void>((r) => process.stdout.write("", () => r()));
  process.exit(exitCode);
}
