/**
 * End-to-end tests (BUILT CLI) of the repository configuration's integrity
 * and of passphrases as bytes (issue 15, "No downgrade" and "Passphrases
 * are bytes"):
 *
 * - the downgrade: an encrypted repository's CONFIG rewritten with
 *   `encryption` nil and its checksum recomputed, `states/` moved aside, and
 *   a backup of a "TOP SECRET" file with the right passphrase: refused (a
 *   passphrase given: exit 2; this client saw it encrypted: exit 1), the
 *   configuration and location named, no stack trace, and no "TOP SECRET"
 *   byte anywhere in the repository; without a passphrase, the record of
 *   known repositories (XDG_CACHE_HOME) refuses it by ID and by location;
 * - a version-2 configuration with one field changed (checksum recomputed,
 *   MAC kept): refused as altered; rewritten as version 1: refused;
 * - passphrases are bytes: two keyfiles whose bytes UTF-8 decoding would
 *   turn into the same string are two passphrases, through --keyfile and
 *   through COFFER_PASSPHRASE given as raw bytes (the test checks that its
 *   route really passes them); one trailing "\n" or "\r\n" of a keyfile is
 *   not part of the passphrase;
 * - the version-1 fixture takes a backup into a copy and stays version 1;
 * - a garbled record is a warning, never a crash.
 */
import { execFileSync } from "node:child_process";
import { createHash, createHmac, hkdfSync } from "node:crypto";
import { promises as fsp } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { decode, encode } from "@msgpack/msgpack";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  baseEnv,
  BUILT_MAIN,
  builtCliExists,
  coffer,
  type CofferResult,
  describeRun,
  type Env,
  EXIT,
  expectExit,
  expectNoStackTrace,
  FAST_KDF,
  lines,
  parseJson,
  PROJECT_ROOT,
} from "../helpers/cli.js";
import { cofferInProcess } from "../helpers/in-process.js";

const PASS = "integrity test passphrase";
const SECRET = "TOP SECRET: the launch codes are 0000";
/** Two passphrases that Node's UTF-8 decoding turns into the same string. */
const PASS_A = Buffer.from("caf\xe9-secret-\xe0\xe8\xec", "latin1");
const PASS_B = Buffer.from("caf\xf1-secret-\xff\xfe\xfd", "latin1");

let base = "";
let counter = 0;

function fresh(name: string): string {
  return path.join(base, `${String(++counter).padStart(3, "0")}-${name}`);
}

beforeAll(async () => {
  if (!builtCliExists()) throw new Error(`${BUILT_MAIN} is missing: run \`npm run build\` before the e2e tests`);
  base = await fsp.mkdtemp(path.join(tmpdir(), "coffer-integrity-"));
});
afterAll(async () => {
  if (base) await fsp.rm(base, { recursive: true, force: true });
});

interface RunOpts {
  env?: Env;
  /** XDG_CACHE_HOME of the run (where the record of known repositories lives). */
  cache: string;
  keyfile?: string;
  /** COFFER_PASSPHRASE as these raw bytes (through a shell, see rawEnvPrefix; the binary). */
  rawPassphrase?: Buffer;
  /** Run the built binary, whose environment is its process's (bytes that are not UTF-8 read back from /proc). */
  binary?: boolean;
}

/** A POSIX sh `printf` format that writes exactly `bytes` (each as an octal escape). */
function printfFormat(bytes: Buffer): string {
  return [...bytes].map((b) => `\\${b.toString(8).padStart(3, "0")}`).join("");
}

/**
 * Node's spawn takes the environment as strings (UTF-8 encoded), so bytes
 * that are not UTF-8 cannot be passed through it: the CLI is run under
 * `sh -c`, which sets COFFER_PASSPHRASE from printf's output (octal escapes,
 * given in an ASCII variable) and execs it.
 */
function rawEnvPrefix(): string[] {
  return ["/bin/sh", "-c", 'COFFER_PASSPHRASE="$(printf "$COFFER_TEST_PASSPHRASE_PRINTF")"; export COFFER_PASSPHRASE; unset COFFER_TEST_PASSPHRASE_PRINTF; exec "$@"', "sh"];
}

async function run(args: string[], o: RunOpts): Promise<CofferResult> {
  const env: Env = { COFFER_PASSPHRASE: undefined, XDG_CACHE_HOME: o.cache, ...o.env };
  if (o.rawPassphrase !== undefined) env.COFFER_TEST_PASSPHRASE_PRINTF = printfFormat(o.rawPassphrase);
  const argv = [...(o.keyfile !== undefined ? ["--keyfile", o.keyfile] : []), ...args];
  const r =
    o.binary || o.rawPassphrase !== undefined
      ? await coffer(argv, { env, cwd: base, ...(o.rawPassphrase !== undefined ? { prefix: rawEnvPrefix() } : {}) })
      : await cofferInProcess(argv, { env, cwd: base });
  expectNoStackTrace(r);
  return r;
}

const withPass = (cache: string): RunOpts => ({ cache, env: { COFFER_PASSPHRASE: PASS } });

/** Every file under `dir`, relative, with its bytes. */
async function filesUnder(dir: string): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  const visit = async (d: string) => {
    for (const e of await fsp.readdir(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) await visit(p);
      else if (e.isFile()) out.set(path.relative(dir, p), await fsp.readFile(p));
    }
  };
  await visit(dir);
  return out;
}

/** `grep -ra "TOP SECRET" REPO`: the files under the repository holding the secret's bytes. */
async function filesWithSecret(repo: string): Promise<string[]> {
  const marker = Buffer.from("TOP SECRET");
  return [...(await filesUnder(repo))].filter(([, b]) => b.includes(marker)).map(([f]) => f);
}

/**
 * Rewrites CONFIG as someone without the passphrase can: decode the msgpack
 * body, change it, encode it again with the same layout ("COFFERCF" |
 * version | body | [version 2: the MAC, kept] | SHA-256 of all before) and
 * a recomputed checksum. `version` relabels it (a version-2 MAC is dropped
 * for version 1; zeros stand for one a version-1 file never had).
 * `resealPlaintext` recomputes the version-2 MAC as anyone can for a
 * plaintext configuration: keyed from the public plaintext master key
 * (docs/FORMAT.md, "Keys" and "Configuration").
 */
async function forgeConfig(repo: string, change: (body: Record<string, unknown>) => void, o: { version?: number; resealPlaintext?: boolean } = {}): Promise<void> {
  const file = path.join(repo, "CONFIG");
  const b = await fsp.readFile(file);
  expect(b.subarray(0, 8).toString("ascii")).toBe("COFFERCF");
  const had = b[8]!;
  const macLength = had >= 2 ? 32 : 0;
  const body = decode(b.subarray(9, b.byteLength - 32 - macLength), { useBigInt64: true }) as Record<string, unknown>;
  let mac = macLength > 0 ? b.subarray(b.byteLength - 64, b.byteLength - 32) : Buffer.alloc(32);
  change(body);
  const version = o.version ?? had;
  const signed = Buffer.concat([Buffer.from("COFFERCF", "ascii"), Buffer.from([version]), encode(body, { useBigInt64: true })]);
  if (o.resealPlaintext) {
    const master = hkdfSync("sha256", body.id as Uint8Array, new Uint8Array(0), "coffer/v1/plaintext-master", 32);
    const key = Buffer.from(hkdfSync("sha256", new Uint8Array(master), new Uint8Array(0), "coffer/v2/config", 32));
    mac = createHmac("sha256", key).update(signed).digest();
  }
  const head = Buffer.concat([signed, version >= 2 ? mac : Buffer.alloc(0)]);
  await fsp.writeFile(file, Buffer.concat([head, createHash("sha256").update(head).digest()]));
}

/** A source directory holding the secret. */
async function secretSource(): Promise<string> {
  const src = fresh("secret-src");
  await fsp.mkdir(src);
  await fsp.writeFile(path.join(src, "plans.txt"), `${SECRET}\n`.repeat(100));
  return src;
}

/** An encrypted repository (created with `cache` as this client's record) holding one backup of `src`. */
async function encryptedRepo(cache: string, src: string): Promise<string> {
  const repo = fresh("repo");
  expectExit(await run(["at", repo, "create", ...FAST_KDF], withPass(cache)), EXIT.OK);
  expectExit(await run(["at", repo, "backup", src], withPass(cache)), EXIT.OK);
  expect(await filesWithSecret(repo), "the encrypted backup holds no clear secret").toEqual([]);
  return repo;
}

/**
 * The downgrade of the issue: encryption nil (checksum recomputed), states
 * moved aside; the version-2 MAC recomputed with the public plaintext key
 * too unless `keepMac` (which the MAC alone then catches).
 */
async function downgrade(repo: string, change: (body: Record<string, unknown>) => void = () => {}, o: { keepMac?: boolean } = {}): Promise<void> {
  await forgeConfig(
    repo,
    (body) => {
      body.encryption = null;
      change(body);
    },
    { resealPlaintext: !o.keepMac },
  );
  await fsp.rename(path.join(repo, "states"), fresh("states-aside"));
}

/** Asserts a refused run wrote nothing: the repository's files are what they were, none holds the secret. */
async function expectUntouched(repo: string, before: Map<string, Buffer>, r: CofferResult): Promise<void> {
  const after = await filesUnder(repo);
  expect([...after.keys()].sort(), `files under ${repo} after\n${describeRun(r)}`).toEqual([...before.keys()].sort());
  for (const [f, b] of after) expect(b.equals(before.get(f)!), `${f} unchanged`).toBe(true);
  expect(await filesWithSecret(repo), `"TOP SECRET" under ${repo}\n${describeRun(r)}`).toEqual([]);
}

describe("an encrypted repository's configuration rewritten to plaintext (the downgrade)", () => {
  it("a control: the forged configuration passes the checksum, and without a passphrase a client that never saw the repository opens it", async () => {
    const cache = fresh("cache");
    const repo = await encryptedRepo(cache, await secretSource());
    await downgrade(repo);
    const r = await run(["at", repo, "info", "--json"], { cache: fresh("other-client") });
    expectExit(r, EXIT.OK);
    expect(parseJson<{ encryption: string }>(r).encryption).toBe("none (plaintext)");
  });

  it("the forgery that keeps the version-2 MAC is caught by it even on such a client: exit 1, altered, nothing written", async () => {
    const src = await secretSource();
    const repo = await encryptedRepo(fresh("cache"), src);
    await downgrade(repo, () => {}, { keepMac: true });
    const before = await filesUnder(repo);
    const r = await run(["at", repo, "backup", src], { cache: fresh("other-client") });
    expectExit(r, EXIT.ERROR);
    expect(r.stderr, describeRun(r)).toContain(`repository configuration at ${repo}: it was altered or damaged`);
    await expectUntouched(repo, before, r);
  });

  it("backup with the right passphrase, this client having seen it encrypted: exit 1, the configuration named as altered, nothing written", async () => {
    const cache = fresh("cache");
    const src = await secretSource();
    const repo = await encryptedRepo(cache, src);
    await downgrade(repo);
    const before = await filesUnder(repo);
    for (const o of [withPass(cache), { cache, keyfile: await keyfile(Buffer.from(PASS)) }]) {
      const r = await run(["at", repo, "backup", src], o);
      expectExit(r, EXIT.ERROR);
      expect(r.stderr, describeRun(r)).toContain(`repository configuration at ${repo}`);
      expect(r.stderr, describeRun(r)).toMatch(/altered or replaced.*not encrypted/);
      await expectUntouched(repo, before, r);
    }
  });

  it("backup with the right passphrase and no record (a fresh XDG_CACHE_HOME): exit 2, naming the location and the passphrase given, nothing written", async () => {
    const src = await secretSource();
    const repo = await encryptedRepo(fresh("cache"), src);
    await downgrade(repo);
    const before = await filesUnder(repo);
    const viaEnv = await run(["at", repo, "backup", src], withPass(fresh("fresh-cache")));
    const viaKeyfile = await run(["at", repo, "backup", src], { cache: fresh("fresh-cache"), keyfile: await keyfile(Buffer.from(`${PASS}\n`)) });
    for (const [r, source] of [
      [viaEnv, "COFFER_PASSPHRASE"],
      [viaKeyfile, "--keyfile"],
    ] as const) {
      expectExit(r, EXIT.USAGE);
      expect(r.stderr, describeRun(r)).toContain(`repository configuration at ${repo} says it is not encrypted`);
      expect(r.stderr, describeRun(r)).toContain(source);
      await expectUntouched(repo, before, r);
    }
    // the same for a read command: nothing is opened as plaintext
    expectExit(await run(["at", repo, "ls"], withPass(fresh("fresh-cache"))), EXIT.USAGE);
  });

  it("backup with no passphrase, this client having seen it encrypted: exit 1 by its ID, and by its location when the ID was changed too", async () => {
    const cache = fresh("cache");
    const src = await secretSource();
    const repo = await encryptedRepo(cache, src);
    const aside = fresh("pristine");
    await fsp.cp(repo, aside, { recursive: true });
    await downgrade(repo);
    const before = await filesUnder(repo);
    const r = await run(["at", repo, "backup", src], { cache });
    expectExit(r, EXIT.ERROR);
    expect(r.stderr, describeRun(r)).toContain(`repository configuration at ${repo}`);
    expect(r.stderr, describeRun(r)).toMatch(/this client opened it encrypted before/);
    await expectUntouched(repo, before, r);

    // A new ID as well: unknown by ID, refused by location.
    await fsp.rm(repo, { recursive: true });
    await fsp.cp(aside, repo, { recursive: true });
    await downgrade(repo, (body) => (body.id = new Uint8Array(32).fill(7)));
    const before2 = await filesUnder(repo);
    const byLocation = await run(["at", repo, "backup", src], { cache });
    expectExit(byLocation, EXIT.ERROR);
    expect(byLocation.stderr, describeRun(byLocation)).toContain(`repository configuration at ${repo}`);
    expect(byLocation.stderr, describeRun(byLocation)).toMatch(/last opened here .* was encrypted/);
    // how to reset it is said: the record's file
    expect(byLocation.stderr).toContain(path.join(cache, "coffer", "locations"));
    await expectUntouched(repo, before2, byLocation);
    // the location given another way (relative to the working directory) is the same location
    expectExit(await run(["at", path.relative(base, repo), "ls"], { cache }), EXIT.ERROR);
  });
});

describe("an altered version-2 configuration", () => {
  const fields: [string, (b: Record<string, unknown>) => void][] = [
    ["compression", (b) => (b.compression = "none")],
    ["chunking", (b) => (b.chunking = { min: 1024, avg: 4096, max: 16384 })],
    ["packSize", (b) => (b.packSize = 65536)],
  ];

  it("one non-key field changed (checksum recomputed): refused as altered with the right passphrase, wrong passphrase still 12", async () => {
    const src = await secretSource();
    for (const [field, change] of fields) {
      const cache = fresh("cache");
      const repo = await encryptedRepo(cache, src);
      await forgeConfig(repo, change);
      const before = await filesUnder(repo);
      // with and without this client's record: the MAC does it
      for (const c of [cache, fresh("fresh-cache")]) {
        const r = await run(["at", repo, "backup", src], withPass(c));
        expectExit(r, EXIT.ERROR);
        expect(r.stderr, `${field}\n${describeRun(r)}`).toContain(`repository configuration at ${repo}: it was altered or damaged`);
        await expectUntouched(repo, before, r);
      }
      expectExit(await run(["at", repo, "ls"], { cache, env: { COFFER_PASSPHRASE: "not it" } }), EXIT.WRONG_PASSPHRASE);
    }
  });

  it("rewritten as version 1 (no MAC): refused, by this client's record and, without one, by the key sealed for version 2", async () => {
    const cache = fresh("cache");
    const src = await secretSource();
    const repo = await encryptedRepo(cache, src);
    await forgeConfig(repo, (b) => ((b.version = 1), (b.compression = "none")), { version: 1 });
    const before = await filesUnder(repo);
    const known = await run(["at", repo, "backup", src], withPass(cache));
    expectExit(known, EXIT.ERROR);
    expect(known.stderr, describeRun(known)).toMatch(/format version 1, but this client opened it at version 2/);
    const unknown = await run(["at", repo, "backup", src], withPass(fresh("fresh-cache")));
    expectExit(unknown, EXIT.ERROR);
    expect(unknown.stderr, describeRun(unknown)).toContain(`repository configuration at ${repo}: it was altered or damaged`);
    expect(unknown.stderr, describeRun(unknown)).toContain("sealed for version 2");
    await expectUntouched(repo, before, unknown);
  });
});

let keyfiles = 0;
async function keyfile(bytes: Buffer): Promise<string> {
  const f = path.join(base, `keyfile-${++keyfiles}`);
  await fsp.writeFile(f, bytes);
  return f;
}

describe("passphrases are bytes", () => {
  it("the test's route passes COFFER_PASSPHRASE's bytes unchanged (where Node's spawn could not)", () => {
    const env = { ...baseEnv(), COFFER_TEST_PASSPHRASE_PRINTF: printfFormat(PASS_A) } as NodeJS.ProcessEnv;
    const [sh, ...args] = rawEnvPrefix();
    const out = execFileSync(sh!, [...args, "printenv", "COFFER_PASSPHRASE"], { env });
    expect(out.toString("hex")).toBe(Buffer.concat([PASS_A, Buffer.from("\n")]).toString("hex"));
    // as Node would hand them on: both collapse to one string
    expect(PASS_A.toString("utf8")).toBe(PASS_B.toString("utf8"));
  });

  it("a repository created with one keyfile does not open with the other (12), opens with its own by keyfile and by COFFER_PASSPHRASE", async () => {
    const cache = fresh("cache");
    const repo = fresh("bytes-repo");
    const src = await secretSource();
    const a = await keyfile(PASS_A);
    const b = await keyfile(PASS_B);
    expectExit(await run(["at", repo, "create", ...FAST_KDF], { cache, keyfile: a }), EXIT.OK);
    expectExit(await run(["at", repo, "ls"], { cache, keyfile: b }), EXIT.WRONG_PASSPHRASE);
    expectExit(await run(["at", repo, "ls"], { cache, rawPassphrase: PASS_B }), EXIT.WRONG_PASSPHRASE);
    // the string Node decodes both to is neither
    expectExit(await run(["at", repo, "ls"], { cache, env: { COFFER_PASSPHRASE: PASS_A.toString("utf8") }, binary: true }), EXIT.WRONG_PASSPHRASE);
    expectExit(await run(["at", repo, "ls"], { cache, keyfile: a }), EXIT.OK);
    const backup = expectExit(await run(["at", repo, "backup", src], { cache, rawPassphrase: PASS_A }), EXIT.OK);
    const id = backup.stdout.trim();
    const listed = expectExit(await run(["at", repo, "ls"], { cache, keyfile: a }), EXIT.OK);
    expect(lines(listed.stdout).some((l) => l.startsWith(id)), describeRun(listed)).toBe(true);
  });

  it("a repository created with raw COFFER_PASSPHRASE bytes opens with a keyfile of those bytes", async () => {
    const cache = fresh("cache");
    const repo = fresh("env-bytes-repo");
    expectExit(await run(["at", repo, "create", ...FAST_KDF], { cache, rawPassphrase: PASS_B }), EXIT.OK);
    expectExit(await run(["at", repo, "ls"], { cache, keyfile: await keyfile(PASS_B) }), EXIT.OK);
    expectExit(await run(["at", repo, "ls"], { cache, keyfile: await keyfile(PASS_A) }), EXIT.WRONG_PASSPHRASE);
  });

  it("one trailing \\n or \\r\\n of a keyfile is not part of the passphrase; anything more is", async () => {
    const cache = fresh("cache");
    const repo = fresh("newline-repo");
    expectExit(await run(["at", repo, "create", ...FAST_KDF], { cache, keyfile: await keyfile(PASS_A) }), EXIT.OK);
    for (const end of ["\n", "\r\n"]) {
      const r = await run(["at", repo, "ls"], { cache, keyfile: await keyfile(Buffer.concat([PASS_A, Buffer.from(end)])) });
      expectExit(r, EXIT.OK);
    }
    for (const end of ["\n\n", "\r", " ", "\r\n\r\n"]) {
      expectExit(await run(["at", repo, "ls"], { cache, keyfile: await keyfile(Buffer.concat([PASS_A, Buffer.from(end)])) }), EXIT.WRONG_PASSPHRASE);
    }
    for (const empty of ["", "\n", "\r\n"]) {
      const r = await run(["at", repo, "ls"], { cache, keyfile: await keyfile(Buffer.from(empty)) });
      expectExit(r, EXIT.USAGE);
      expect(r.stderr, describeRun(r)).toMatch(/keyfile .* is empty/);
    }
  });
});

describe("the version-1 fixture", () => {
  it("takes a backup into a copy, which stays version 1 and lists both snapshots", async () => {
    const repo = fresh("v1-copy");
    await fsp.cp(path.join(PROJECT_ROOT, "test", "fixtures", "v1-repo"), repo, { recursive: true });
    const cache = fresh("cache");
    const o = { cache, env: { COFFER_PASSPHRASE: "fixture-v1" } };
    const src = await secretSource();
    const b = expectExit(await run(["at", repo, "backup", src], o), EXIT.OK);
    const listed = expectExit(await run(["at", repo, "ls"], o), EXIT.OK);
    expect(lines(listed.stdout), describeRun(listed)).toHaveLength(2);
    expect(lines(listed.stdout).some((l) => l.startsWith(b.stdout.trim()))).toBe(true);
    const info = parseJson<{ version: number }>(expectExit(await run(["at", repo, "info", "--json"], o), EXIT.OK));
    expect(info.version).toBe(1);
    const cat = expectExit(await run(["at", repo, "cat", `${b.stdout.trim()}:/plans.txt`], o), EXIT.OK);
    expect(cat.stdout.startsWith(SECRET)).toBe(true);
    expect(await filesWithSecret(repo)).toEqual([]);
  });
});

describe("the record of known repositories", () => {
  it("lives under XDG_CACHE_HOME/coffer: one file per repository ID and per location", async () => {
    const cache = fresh("cache");
    const repo = fresh("recorded");
    const created = parseJson<{ id: string }>(expectExit(await run(["at", repo, "create", "--json", ...FAST_KDF], withPass(cache)), EXIT.OK));
    const byId = JSON.parse(await fsp.readFile(path.join(cache, "coffer", "repositories", `${created.id}.json`), "utf8")) as Record<string, unknown>;
    expect(byId).toEqual({ v: 1, id: created.id, encrypted: true, version: 2 });
    const locations = await fsp.readdir(path.join(cache, "coffer", "locations"));
    expect(locations).toHaveLength(1);
    const byLocation = JSON.parse(await fsp.readFile(path.join(cache, "coffer", "locations", locations[0]!), "utf8")) as Record<string, unknown>;
    expect(byLocation).toEqual({ v: 1, location: `fs:${repo}`, id: created.id, encrypted: true, version: 2 });
  });

  it("a garbled or unreadable record is a warning, never a crash, and is rewritten", async () => {
    const cache = fresh("cache");
    const repo = fresh("garbled");
    const created = parseJson<{ id: string }>(expectExit(await run(["at", repo, "create", "--json", ...FAST_KDF], withPass(cache)), EXIT.OK));
    const file = path.join(cache, "coffer", "repositories", `${created.id}.json`);
    for (const garbage of ["{not json", '{"v":1,"id":"nope"}', "[]", "\u0000\u00ff"]) {
      await fsp.writeFile(file, garbage);
      const r = await run(["at", repo, "ls"], withPass(cache));
      expectExit(r, EXIT.OK);
      expect(r.stderr, describeRun(r)).toMatch(/^coffer: warning: ignoring .*\.json/m);
      expect(JSON.parse(await fsp.readFile(file, "utf8"))).toMatchObject({ id: created.id, encrypted: true });
    }
    // a directory where the file should be: cannot be read nor written, still a warning
    await fsp.rm(file);
    await fsp.mkdir(file);
    const r = await run(["at", repo, "ls"], withPass(cache));
    expectExit(r, EXIT.OK);
    expect(r.stderr, describeRun(r)).toMatch(/^coffer: warning: cannot read .*\.json \(EISDIR\)/m);
    expect(r.stderr, describeRun(r)).toMatch(/^coffer: warning: cannot record the repository in .*\.json/m);
  });

  it("a plaintext repository opens without a passphrase, and refuses one (exit 2); create --plaintext warns about it", async () => {
    const cache = fresh("cache");
    const repo = fresh("plain");
    const created = expectExit(await run(["at", repo, "create", "--plaintext"], withPass(cache)), EXIT.OK);
    expect(created.stderr).toMatch(/warning: a passphrase is given \(COFFER_PASSPHRASE\) but the repository is plaintext/);
    expectExit(await run(["at", repo, "ls"], { cache }), EXIT.OK);
    const r = await run(["at", repo, "ls"], withPass(cache));
    expectExit(r, EXIT.USAGE);
    expect(r.stderr, describeRun(r)).toContain(`the repository configuration at ${repo} says it is not encrypted`);
  });

  it("create at a location resets its record: a new plaintext repository where an encrypted one was is not refused", async () => {
    const cache = fresh("cache");
    const repo = fresh("replaced");
    expectExit(await run(["at", repo, "create", ...FAST_KDF], withPass(cache)), EXIT.OK);
    await fsp.rm(repo, { recursive: true });
    expectExit(await run(["at", repo, "create", "--plaintext"], { cache }), EXIT.OK);
    expectExit(await run(["at", repo, "ls"], { cache }), EXIT.OK);
  });
});
