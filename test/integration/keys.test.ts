/**
 * `coffer key list|add|remove|passwd` in process (src/cli through
 * buildProgram) on fs and ptar repositories: several passphrases open one
 * repository, the last key and the one in use are kept without --force,
 * passwd replaces the key in use, and a failed replacement leaves a
 * configuration that opens with the old passphrase.
 */
import { promises as fsp } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { MemoryStore } from "../../src/connectors/memory/store.js";
import type { Store } from "../../src/connectors/store.js";
import { decodeConfig, unlock } from "../../src/repository/config.js";
import { isCofferError } from "../../src/util/errors.js";
import { failing, faults } from "../helpers/faults.js";
import { type ProgramRun, runProgram, storeLocation } from "../helpers/program.js";

const base = await fsp.mkdtemp(path.join(tmpdir(), "coffer-keys-"));
afterAll(async () => {
  await fsp.rm(base, { recursive: true, force: true });
});
let seq = 0;
const FAST = ["--kdf-memory", "1", "--kdf-passes", "1"];

type Run = ProgramRun;

/** Runs `coffer ARGV` in process at `at`; with `typed`, each passphrase prompt is answered with the next of them. */
function cli(at: string, argv: string[], env: Record<string, string>, typed?: string[]): Promise<Run> {
  return runProgram(argv, { at, env: { HOME: base, XDG_CACHE_HOME: path.join(base, "cache"), ...env }, cwd: base, ...(typed !== undefined ? { typed } : {}) });
}

const as = (p: string, extra: Record<string, string> = {}) => ({ COFFER_PASSPHRASE: p, ...extra });
const codeOf = (r: Run) => (r.error === undefined ? `exit ${r.code}` : isCofferError(r.error) ? r.error.code : String(r.error));

async function ok(at: string, argv: string[], env: Record<string, string>): Promise<Run> {
  const r = await cli(at, argv, env);
  expect(codeOf(r), `${argv.join(" ")}: ${r.stderr} ${String(r.error)}`).toBe("exit 0");
  return r;
}

interface KeyJson {
  id: string;
  current: boolean;
  host: string;
  user: string;
  created: string;
}

async function keys(at: string, p: string): Promise<KeyJson[]> {
  return (JSON.parse((await ok(at, ["key", "list", "--json"], as(p))).stdout) as { keys: KeyJson[] }).keys;
}

for (const kind of ["fs", "ptar"] as const) {
  describe(`coffer key on the ${kind} store`, () => {
    const fresh = async () => {
      const at = kind === "fs" ? `fs:${path.join(base, `repo-${++seq}`)}` : `ptar:${path.join(base, `repo-${++seq}.ptar`)}`;
      await ok(at, ["create", ...FAST], as("first"));
      return at;
    };

    it("adds a key: either passphrase opens the repository, and the list names both", async () => {
      const at = await fresh();
      const before = await keys(at, "first");
      expect(before).toHaveLength(1);
      await ok(at, ["key", "add", ...FAST, "--host", "hostb", "--user", "bob"], as("first", { COFFER_NEW_PASSPHRASE: "second" }));
      await ok(at, ["ls"], as("second"));
      await ok(at, ["ls"], as("first"));
      const after = await keys(at, "second");
      expect(after).toHaveLength(2);
      expect(after[0]).toMatchObject({ host: "hostb", user: "bob", current: true });
      expect(after[1]).toMatchObject({ id: before[0]!.id, current: false });
      expect(Date.parse(after[0]!.created)).toBeGreaterThan(Date.now() - 600_000);
      const r = await cli(at, ["ls"], as("third"));
      expect(codeOf(r)).toBe("WRONG_PASSPHRASE");
    });

    it("refuses to remove the last key and the key in use without --force", async () => {
      const at = await fresh();
      const [only] = await keys(at, "first");
      expect(codeOf(await cli(at, ["key", "remove", only!.id.slice(0, 8)], as("first")))).toBe("USAGE");
      await ok(at, ["key", "add", ...FAST], as("first", { COFFER_NEW_PASSPHRASE: "second" }));
      expect(codeOf(await cli(at, ["key", "remove", only!.id.slice(0, 8)], as("first")))).toBe("USAGE");
      // Removed through the other key, the first passphrase no longer opens it.
      await ok(at, ["key", "remove", only!.id.slice(0, 8)], as("second"));
      expect(codeOf(await cli(at, ["ls"], as("first")))).toBe("WRONG_PASSPHRASE");
      await ok(at, ["ls"], as("second"));
    });

    it("the new passphrase can be typed at a terminal, twice; two that differ are refused", async () => {
      const at = await fresh();
      const typo = await cli(at, ["key", "add", ...FAST], as("first"), ["typed one", "typed 0ne"]);
      expect(codeOf(typo)).toBe("USAGE");
      expect(String(typo.error)).toMatch(/do not match/);
      expect(await keys(at, "first")).toHaveLength(1);
      const r = await cli(at, ["key", "add", ...FAST], as("first"), ["typed one", "typed one"]);
      expect(codeOf(r), r.stderr).toBe("exit 0");
      expect(r.stderr).toContain("new passphrase: ");
      await ok(at, ["ls"], as("typed one"));
    });

    it("passwd replaces the key in use: the old passphrase then fails with the wrong-passphrase error", async () => {
      const at = await fresh();
      const newFile = path.join(base, `new-${++seq}`);
      await fsp.writeFile(newFile, "renewed\n");
      await ok(at, ["key", "passwd", ...FAST, "--new-passphrase-file", newFile], as("first"));
      expect(codeOf(await cli(at, ["ls"], as("first")))).toBe("WRONG_PASSPHRASE");
      await ok(at, ["ls"], as("renewed"));
      expect(await keys(at, "renewed")).toHaveLength(1);
    });
  });
}

describe("a failed configuration replacement", () => {
  it("leaves a configuration that opens with the old passphrase (and the new one when it was done)", async () => {
    for (const after of [false, true]) {
      const mem = new MemoryStore();
      await ok(storeLocation(() => mem.view()).at, ["create", ...FAST], as("first"));
      const faulty = storeLocation(() => failing(mem.view(), { op: "replaceConfig", error: faults.io, after }));
      const r = await cli(faulty.at, ["key", "add", ...FAST], as("first", { COFFER_NEW_PASSPHRASE: "second" }));
      expect(codeOf(r)).toBe("IO");
      const config = decodeConfig(await mem.open());
      await unlock(config, "first");
      if (after) await unlock(config, "second");
      else expect(isCofferError(await unlock(config, "second").catch((e: unknown) => e), "WRONG_PASSPHRASE")).toBe(true);
    }
  });

  it("a store without replaceConfig (as a plugin's) is refused, naming the store", async () => {
    const mem = new MemoryStore();
    await ok(storeLocation(() => mem.view()).at, ["create", ...FAST], as("first"));
    const inner = mem.view();
    // The memory store less its replaceConfig: what a store plugin is (docs/WIRE.md has no such call).
    const bare = new Proxy(inner, {
      get: (t, k) => {
        if (k === "replaceConfig") return undefined;
        const v = Reflect.get(t, k, t) as unknown;
        return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(t) : v;
      },
    }) as Store;
    const { at } = storeLocation(() => bare);
    const r = await cli(at, ["key", "add", ...FAST], as("first", { COFFER_NEW_PASSPHRASE: "second" }));
    expect(codeOf(r)).toBe("UNSUPPORTED");
    expect(String(r.error)).toMatch(/memory store/);
    await unlock(decodeConfig(await mem.open()), "first");
    // Listing replaces nothing: it works on such a store.
    expect((await ok(at, ["key", "list"], as("first"))).stdout).toMatch(/^\* [0-9a-f]{8} {2}\?@\?/);
  });
});

