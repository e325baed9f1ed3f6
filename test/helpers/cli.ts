/**
 * Runs the BUILT coffer CLI (bin/coffer.js -> dist/cli/main.js) as a child
 * process of the Node that runs the tests (Node 24): the e2e layer, for what
 * needs a real process (the launcher, signals, exit statuses, another user;
 * ./in-process.ts runs the rest in this process). With no TTY: stdin is
 * ignored unless `input` is given, FORCE_COLOR=0, and a minimal environment
 * (nothing inherited from the caller but PATH and a few locale variables,
 * so a stray COFFER_* variable can never leak into a test). XDG_CACHE_HOME
 * is a temporary directory of the vitest run (test/helpers/global-cache.ts),
 * so the CLI's record of known repositories never lands in the real home.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { ExitCode } from "../../src/cli/exit-codes.js";

export const PROJECT_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const COFFER_BIN = path.join(PROJECT_ROOT, "bin", "coffer.js");
export const BUILT_MAIN = path.join(PROJECT_ROOT, "dist", "cli", "main.js");

/** Fast KDF parameters for tests (create only). */
export const FAST_KDF = ["--kdf-memory", "8", "--kdf-passes", "1"] as const;

/** The exit codes by name (src/cli/exit-codes.ts; docs/CLI.md's table is checked against them). */
export const EXIT = ExitCode;

export type Env = Record<string, string | undefined>;

export interface CofferOptions {
  /** Added to (and, with an undefined value, removed from) the base environment. */
  env?: Env;
  /** Written to stdin, which is then closed. Without it stdin is /dev/null. */
  input?: string | Buffer;
  /** Leave stdin an open pipe (`child.stdin`) for the test to write and end: a gate the CLI cannot pass alone. */
  openStdin?: boolean;
  cwd?: string;
  /** Killed with SIGKILL after this long (default 150 s); `timedOut` is then set. */
  timeoutMs?: number;
  /** A command to run the CLI under, e.g. ["setpriv", "--reuid=65534", ...]. */
  prefix?: string[];
  /** Another Node and launcher than the tests' own (e.g. a copy another user can reach). */
  runtime?: { node: string; bin: string };
}

export interface CofferResult {
  /** The command line, for messages. */
  command: string;
  stdout: string;
  stderr: string;
  /** stdout as raw bytes (for `cat`). */
  stdoutBytes: Buffer;
  /** null when the process was killed by a signal. */
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
  durationMs: number;
}

let cacheHome: string | undefined;
/**
 * The XDG_CACHE_HOME of every CLI child: the run's (test/helpers/global-cache.ts),
 * else one of this process, created on first use and removed when it exits.
 */
function testCacheHome(): string {
  cacheHome ??= process.env.COFFER_TEST_CACHE_HOME;
  if (cacheHome === undefined) {
    const dir = mkdtempSync(path.join(tmpdir(), "coffer-test-cache-"));
    cacheHome = dir;
    process.once("exit", () => rmSync(dir, { recursive: true, force: true }));
  }
  return cacheHome;
}

/** The environment every invocation starts from. */
export function baseEnv(): Env {
  const env: Env = { FORCE_COLOR: "0", NO_COLOR: "1", LANG: "C.UTF-8", LC_ALL: "C.UTF-8", TZ: "UTC", XDG_CACHE_HOME: testCacheHome() };
  for (const k of ["PATH", "HOME", "TMPDIR", "USER", "LOGNAME"]) {
    const v = process.env[k];
    if (v !== undefined) env[k] = v;
  }
  return env;
}

/** The base environment with `extra` added (an undefined value removes a variable). */
export function mergeEnv(extra: Env | undefined): NodeJS.ProcessEnv {
  const env: Env = { ...baseEnv(), ...(extra ?? {}) };
  const out: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(env)) if (v !== undefined) out[k] = v;
  return out;
}

export function quote(a: string): string {
  return /^[\w@%+=:,./-]+$/.test(a) ? a : JSON.stringify(a);
}

export interface RunningCoffer {
  child: ChildProcess;
  command: string;
  result: Promise<CofferResult>;
}

/** Starts the CLI and returns at once (for tests that signal or race it). */
export function startCoffer(args: readonly string[], opts: CofferOptions = {}): RunningCoffer {
  const argv = [...(opts.prefix ?? []), opts.runtime?.node ?? process.execPath, opts.runtime?.bin ?? COFFER_BIN, ...args];
  const command = ["coffer", ...args].map(quote).join(" ");
  const t0 = Date.now();
  const child = spawn(argv[0] as string, argv.slice(1), {
    cwd: opts.cwd ?? PROJECT_ROOT,
    env: mergeEnv(opts.env),
    stdio: [opts.input === undefined && !opts.openStdin ? "ignore" : "pipe", "pipe", "pipe"],
  });
  child.stdin?.on("error", () => {}); // the CLI may exit (or be killed) before reading it
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout?.on("data", (d: Buffer) => out.push(d));
  child.stderr?.on("data", (d: Buffer) => err.push(d));
  if (opts.input !== undefined && child.stdin) child.stdin.end(opts.input);
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill("SIGKILL");
  }, opts.timeoutMs ?? 150_000);
  const result = new Promise<CofferResult>((resolve, reject) => {
    child.on("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      const stdoutBytes = Buffer.concat(out);
      resolve({
        command,
        stdout: stdoutBytes.toString("utf8"),
        stderr: Buffer.concat(err).toString("utf8"),
        stdoutBytes,
        exitCode: code,
        signal,
        timedOut,
        durationMs: Date.now() - t0,
      });
    });
  });
  return { child, command, result };
}

/**
 * Resolves with the CLI's stderr so far once it matches `re` (an event to
 * signal on, instead of a delay); rejects, with the run described, if the
 * process ends first.
 */
export function waitForStderr(job: RunningCoffer, re: RegExp): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = "";
    const onData = (d: Buffer) => {
      text += d.toString("utf8");
      if (re.test(text)) {
        job.child.stderr?.off("data", onData);
        resolve(text);
      }
    };
    job.child.stderr?.on("data", onData);
    void job.result.then((r) => reject(new Error(`${job.command} ended before its stderr matched ${re}\n${describeRun(r)}`)), reject);
  });
}

/** Runs the CLI to completion: `coffer(args, {env, input}) -> {stdout, stderr, exitCode}`. */
export function coffer(args: readonly string[], opts: CofferOptions = {}): Promise<CofferResult> {
  return startCoffer(args, opts).result;
}

/** A readable account of a run, for assertion messages. */
export function describeRun(r: CofferResult, max = 4000): string {
  const cut = (s: string) => (s.length > max ? `${s.slice(0, max)}... [${s.length - max} more chars]` : s);
  const status = r.timedOut ? "TIMED OUT" : r.signal !== null ? `killed by ${r.signal}` : `exit ${r.exitCode}`;
  return `$ ${r.command}\n-> ${status} after ${r.durationMs} ms\n--- stdout ---\n${cut(r.stdout)}\n--- stderr ---\n${cut(r.stderr)}`;
}

/** Throws (with the whole run described) unless the exit code is one of `codes`. */
export function expectExit(r: CofferResult, ...codes: number[]): CofferResult {
  if (r.exitCode === null || !codes.includes(r.exitCode)) {
    throw new Error(`expected exit ${codes.join(" or ")}\n${describeRun(r)}`);
  }
  return r;
}

/** Lines of a V8 stack trace ("    at fn (file:1:2)"). */
const STACK_LINE = /^\s+at (?:.+ \()?(?:file:|node:|\/|<anonymous>).*:\d+(?::\d+)?\)?$/m;

export function hasStackTrace(text: string): boolean {
  return STACK_LINE.test(text);
}

/** Throws unless neither stream shows a stack trace. */
export function expectNoStackTrace(r: CofferResult): void {
  if (hasStackTrace(r.stderr) || hasStackTrace(r.stdout)) {
    throw new Error(`a stack trace was printed without --debug\n${describeRun(r)}`);
  }
}

/** Parses stdout as one JSON value, or throws with the run described. */
export function parseJson<T = unknown>(r: CofferResult): T {
  try {
    return JSON.parse(r.stdout) as T;
  } catch (e) {
    throw new Error(`stdout is not one JSON value (${(e as Error).message})\n${describeRun(r)}`, { cause: e });
  }
}

export function builtCliExists(): boolean {
  return existsSync(BUILT_MAIN);
}

/** Non-empty stdout lines. */
export function lines(text: string): string[] {
  return text.split("\n").filter((l) => l.trim() !== "");
}
