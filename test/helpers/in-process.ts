/**
 * Runs the BUILT CLI in this process: run() of dist/cli/run.js (what
 * bin/coffer.js runs, worker threads included) on captured streams, with
 * the same environment as ./cli.ts gives a child (a minimal one, FORCE_COLOR=0,
 * the run's XDG_CACHE_HOME) and the same result shape, so a test can use
 * either. stdin is empty unless `input` is given, and never a terminal.
 * What needs a real process (the launcher, signals, exit statuses, another
 * user, raw environment bytes) runs the binary with ./cli.ts instead.
 */
import { Readable, Writable } from "node:stream";
import * as path from "node:path";
import { pathToFileURL } from "node:url";
import type { run as Run } from "../../src/cli/run.js";
import { type CofferResult, type Env, mergeEnv, PROJECT_ROOT, quote } from "./cli.js";

const BUILT_RUN = path.join(PROJECT_ROOT, "dist", "cli", "run.js");

export interface InProcessOptions {
  /** Added to (and, with an undefined value, removed from) the base environment. */
  env?: Env;
  /** What stdin holds; without it stdin is empty. */
  input?: string | Buffer;
  /** The run's working directory (default: the project's root). */
  cwd?: string;
  /** Aborts the run (an interrupt) after this long (default 150 s); `timedOut` is then set. */
  timeoutMs?: number;
  /** Aborting it interrupts the run, as SIGINT does the binary. */
  signal?: AbortSignal;
}

let loaded: Promise<typeof Run> | undefined;

/** run() of the built CLI, imported once per test process. */
function builtRun(): Promise<typeof Run> {
  loaded ??= import(pathToFileURL(BUILT_RUN).href).then((m: { run: typeof Run }) => m.run);
  return loaded;
}

/** A stream that keeps what is written to it. */
function capture(into: Buffer[]): Writable {
  return new Writable({
    write(chunk: Buffer, _encoding, done) {
      into.push(chunk);
      done();
    },
  });
}

/** `data` in the pieces a pipe would deliver it in. */
function* pieces(data: Buffer, size = 64 * 1024): Generator<Buffer> {
  for (let at = 0; at < data.byteLength; at += size) yield data.subarray(at, at + size);
}

/** Runs the CLI in this process to completion: `cofferInProcess(args, {env, input}) -> {stdout, stderr, exitCode}`. */
export async function cofferInProcess(args: readonly string[], opts: InProcessOptions = {}): Promise<CofferResult> {
  const run = await builtRun();
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  const stdout = capture(out);
  const stderr = capture(err);
  const stdin = Readable.from(pieces(opts.input === undefined ? Buffer.alloc(0) : Buffer.from(opts.input)), { objectMode: false });
  const controller = new AbortController();
  const onAbort = () => controller.abort(opts.signal?.reason);
  opts.signal?.addEventListener("abort", onAbort, { once: true });
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    controller.abort();
  }, opts.timeoutMs ?? 150_000);
  const t0 = Date.now();
  try {
    const exitCode = await run(args, { stdin, stdout, stderr, env: mergeEnv(opts.env), cwd: opts.cwd ?? PROJECT_ROOT, signal: controller.signal });
    const stdoutBytes = Buffer.concat(out);
    return {
      command: ["coffer", ...args].map(quote).join(" "),
      stdout: stdoutBytes.toString("utf8"),
      stderr: Buffer.concat(err).toString("utf8"),
      stdoutBytes,
      exitCode,
      signal: null,
      timedOut,
      durationMs: Date.now() - t0,
    };
  } finally {
    clearTimeout(timer);
    opts.signal?.removeEventListener("abort", onAbort);
  }
}
