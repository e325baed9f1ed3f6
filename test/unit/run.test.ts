/**
 * run(argv, io) (src/cli/run.ts) from the sources: it returns the exit code
 * rather than exit, writes only to the streams it is given, and takes its
 * environment, directory, stdin and cancellation from `io`, never from
 * the process.
 */
import { existsSync, promises as fsp } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { Readable, Writable } from "node:stream";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { CliIo } from "../../src/cli/context.js";
import { ExitCode, exitCodesHelp } from "../../src/cli/exit-codes.js";
import { reportError, run } from "../../src/cli/run.js";
import { CofferError, CorruptError } from "../../src/util/errors.js";

let base = "";
beforeAll(async () => {
  base = await fsp.mkdtemp(path.join(tmpdir(), "coffer-run-"));
});
afterAll(async () => {
  await fsp.rm(base, { recursive: true, force: true });
});

interface Captured {
  code: ExitCode;
  stdout: string;
  stderr: string;
}

function sink(into: Buffer[]): Writable {
  return new Writable({
    write(chunk: Buffer, _e, done) {
      into.push(chunk);
      done();
    },
  });
}

async function runIn(argv: string[], o: Partial<CliIo> & { input?: string } = {}): Promise<Captured> {
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  const code = await run(argv, {
    stdin: o.stdin ?? Readable.from(o.input === undefined ? [] : [Buffer.from(o.input)], { objectMode: false }),
    stdout: sink(out),
    stderr: sink(err),
    env: o.env ?? { HOME: base, XDG_CACHE_HOME: path.join(base, "cache"), XDG_DATA_HOME: path.join(base, "data") },
    cwd: o.cwd ?? base,
    signal: o.signal ?? new AbortController().signal,
  });
  return { code, stdout: Buffer.concat(out).toString("utf8"), stderr: Buffer.concat(err).toString("utf8") };
}

describe("run: arguments and help", () => {
  it("--help goes to the given stdout and ends with the exit codes: OK", async () => {
    const r = await runIn(["--help"]);
    expect(r.code).toBe(ExitCode.OK);
    expect(r.stdout).toContain("Usage: coffer [at LOCATION] <command> [options]");
    expect(r.stdout).toContain(exitCodesHelp());
    expect(r.stderr).toBe("");
  });

  it("no command: the help on stderr, USAGE", async () => {
    const r = await runIn([]);
    expect(r.code).toBe(ExitCode.USAGE);
    expect(r.stdout).toBe("");
    expect(r.stderr).toContain("Usage: coffer");
  });

  it("`at` without a LOCATION, and an unknown command: USAGE, said on stderr (escaped)", async () => {
    const at = await runIn(["at"]);
    expect(at).toEqual({ code: ExitCode.USAGE, stdout: "", stderr: "coffer: `at` needs a LOCATION\n" });
    const unknown = await runIn(["frob\x1b[31m"]);
    expect(unknown.code).toBe(ExitCode.USAGE);
    expect(unknown.stderr).toContain("frob\\033[31m");
    expect(unknown.stderr).not.toContain("\x1b");
  });
});

describe("run: the run's environment, directory and stdin", () => {
  const saved = process.env.COFFER_REPOSITORY;
  afterEach(() => {
    if (saved === undefined) delete process.env.COFFER_REPOSITORY;
    else process.env.COFFER_REPOSITORY = saved;
  });

  it("a missing repository is NO_REPOSITORY, from io.env's COFFER_REPOSITORY and not the process's", async () => {
    process.env.COFFER_REPOSITORY = path.join(base, "not-this-one");
    await fsp.mkdir(path.join(base, "plain"));
    const made = await runIn(["create", "--plaintext"], { env: { HOME: base, XDG_CACHE_HOME: path.join(base, "cache"), COFFER_REPOSITORY: path.join(base, "plain") } });
    expect(made.code, made.stderr).toBe(ExitCode.OK);
    expect(existsSync(path.join(base, "plain", "CONFIG"))).toBe(true);
    expect(existsSync(path.join(base, "not-this-one"))).toBe(false);
    const missing = await runIn(["at", path.join(base, "nowhere"), "ls"]);
    expect(missing.code).toBe(ExitCode.NO_REPOSITORY);
    expect(missing.stderr).toMatch(/^coffer: .*nowhere/);
  });

  it("relative locations are taken from io.cwd; stdin:NAME reads io.stdin and cat writes io.stdout", async () => {
    const dir = path.join(base, "cwd");
    await fsp.mkdir(dir);
    expect((await runIn(["at", "repo", "create", "--plaintext"], { cwd: dir })).code).toBe(ExitCode.OK);
    expect(existsSync(path.join(dir, "repo", "CONFIG"))).toBe(true);
    const b = await runIn(["at", "repo", "backup", "-q", "stdin:piped.txt"], { cwd: dir, input: "bytes from the run's stdin\n" });
    expect(b.code, b.stderr).toBe(ExitCode.OK);
    const id = b.stdout.trim();
    const cat = await runIn(["at", "repo", "cat", `${id}:/piped.txt`], { cwd: dir });
    expect(cat).toEqual({ code: ExitCode.OK, stdout: "bytes from the run's stdin\n", stderr: "" });
  });

  it("an aborted signal is an interrupt: INTERRUPTED, and nothing on stdout", async () => {
    const dir = path.join(base, "aborted");
    await fsp.mkdir(dir);
    expect((await runIn(["at", "repo", "create", "--plaintext"], { cwd: dir })).code).toBe(ExitCode.OK);
    const c = new AbortController();
    c.abort(new CofferError("INTERRUPTED", "interrupted"));
    const r = await runIn(["at", "repo", "backup", "stdin:x"], { cwd: dir, input: "x", signal: c.signal });
    expect(r.code).toBe(ExitCode.INTERRUPTED);
    expect(r.stdout).toBe("");
    expect(r.stderr).toContain("interrupted");
  });
});

describe("reportError", () => {
  function report(e: unknown, debug = false): { code: ExitCode; text: string } {
    const out: Buffer[] = [];
    const code = reportError(e, sink(out), debug);
    return { code, text: Buffer.concat(out).toString("utf8") };
  }

  it("a CofferError: its message, and the exit code of its code", () => {
    expect(report(new CofferError("LOCKED", "locked by pid 1"))).toEqual({ code: ExitCode.LOCKED, text: "coffer: locked by pid 1\n" });
    expect(report(new CorruptError("packfile ab", "authentication failed")).code).toBe(ExitCode.ERROR);
    expect(report(new CofferError("NO_PASSPHRASE", "no passphrase")).code).toBe(ExitCode.USAGE);
  });

  it("anything else is ERROR; a stack trace only with debug", () => {
    const plain = report(new TypeError("x is not a function"));
    expect(plain).toEqual({ code: ExitCode.ERROR, text: "coffer: x is not a function\n" });
    const debug = report(new TypeError("x is not a function"), true);
    expect(debug.text).toMatch(/^coffer: x is not a function\nTypeError: x is not a function\n\s+at /);
  });
});
