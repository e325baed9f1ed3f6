/**
 * Runs coffer's commander program (src/cli/program.ts, the sources, not the
 * build) in this process, on a store the test makes: storeLocation() names
 * it as a `test-store:ID` location, so a test can hand the CLI a fault-kit
 * or recording store. ./in-process.ts runs the built CLI instead, on the
 * built-in connectors only.
 */
import { PassThrough, Readable, Writable } from "node:stream";
import type { Context } from "../../src/cli/context.js";
import { buildProgram } from "../../src/cli/program.js";
import { builtinRegistry } from "../../src/connectors/builtins.js";
import type { Store } from "../../src/connectors/store.js";

const makers = new Map<string, () => Store>();
let seq = 0;
const registry = builtinRegistry();
registry.register({
  kind: "storage",
  protocols: ["test-store"],
  flags: 0,
  description: "a test's own store",
  params: [],
  provider: "test",
  make: (loc) => {
    const make = makers.get(loc.rest);
    if (!make) throw new Error(`no test store "${loc.raw}" (released, or never made)`);
    return make();
  },
});

/** A location whose every open calls `make`, until release(). */
export function storeLocation(make: () => Store): { at: string; release(): void } {
  const id = String(++seq);
  makers.set(id, make);
  return { at: `test-store:${id}`, release: () => void makers.delete(id) };
}

export interface ProgramRun {
  /** The exit code, when the program did not throw. */
  code?: number;
  /** What it threw (an error the CLI's main() would map to an exit code). */
  error?: unknown;
  stdout: string;
  stderr: string;
}

export interface ProgramOptions {
  /** The repository's location (--at): a path, or storeLocation()'s. */
  at: string;
  env: Record<string, string>;
  /** The working and scratch directory. */
  cwd: string;
  /** When given, stdin and stderr are a terminal, and each prompt on stderr (a write ending in "passphrase: ") is answered with the next of these. */
  typed?: string[];
}

/** Runs `coffer --at AT ARGV` to completion. */
export async function runProgram(argv: readonly string[], o: ProgramOptions): Promise<ProgramRun> {
  const out = { stdout: "", stderr: "" };
  const terminal = new PassThrough();
  const answers = [...(o.typed ?? [])];
  const sink = (k: "stdout" | "stderr") =>
    new Writable({
      write: (c, _e, cb) => {
        out[k] += String(c);
        if (k === "stderr" && String(c).endsWith("passphrase: ") && answers.length > 0) setImmediate(() => terminal.write(`${answers.shift()!}\n`));
        cb();
      },
    });
  const streams = { stdout: sink("stdout"), stderr: sink("stderr") };
  if (o.typed !== undefined) for (const s of [terminal, streams.stderr]) Object.assign(s, { isTTY: true });
  const ctx = (): Context => ({
    globals: { at: o.at },
    signal: new AbortController().signal,
    ...streams,
    stdin: o.typed !== undefined ? terminal : Readable.from([]),
    cwd: o.cwd,
    tmpDir: o.cwd,
    env: o.env,
    registry,
  });
  let code = 0;
  try {
    await buildProgram(ctx, (c) => (code = c), streams).parseAsync([...argv], { from: "user" });
    return { code, ...out };
  } catch (error) {
    return { error, ...out };
  }
}
