/**
 * End-to-end tests of the BUILT coffer CLI (run `npm run build` first) on
 * temporary directories, with no TTY and FORCE_COLOR=0: most steps run its
 * run() in this process (test/helpers/in-process.ts); those only a process
 * shows (exit statuses, stdin, signals, the launcher's flags, another user)
 * run `node bin/coffer.js ...`. Needs root (the awkward tree chowns to
 * other users; one test drops to `nobody` with setpriv).
 */
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { createReadStream, existsSync, promises as fsp } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { pipeline } from "node:stream/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  builtCliExists,
  BUILT_MAIN,
  coffer,
  type CofferResult,
  describeRun,
  type Env,
  EXIT,
  expectExit,
  expectNoStackTrace,
  FAST_KDF,
  hasStackTrace,
  lines,
  parseJson,
  type RunningCoffer,
  startCoffer,
} from "../helpers/cli.js";
import { cofferInProcess } from "../helpers/in-process.js";
import { lacks } from "../helpers/prerequisites.js";
import { stageCli, type StagedCli } from "../helpers/stage.js";
import { escapeName } from "../../src/util/names.js";
import {
  type AwkwardTree,
  compareTrees,
  compressibleText,
  copyTree,
  hashFile,
  makeAwkwardTree,
  seededBytes,
  treeBytes,
  walkTree,
  writeSeededFile,
} from "../helpers/tree.js";

const MiB = 1024 * 1024;
const KiB = 1024;
const PASS = "correct horse battery staple";
const isRoot = process.getuid?.() === 0;
const hasSetpriv = (() => {
  try {
    execFileSync("setpriv", ["--version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
})();

let base = "";
let home = "";
let counter = 0;

/** A fresh path under the suite's temp directory (not created). */
function fresh(name: string): string {
  return path.join(base, `${String(++counter).padStart(3, "0")}-${name}`);
}

function env(extra: Env = {}): Env {
  return { HOME: home, TMPDIR: path.join(base, "tmp"), COFFER_PASSPHRASE: PASS, ...extra };
}

interface RunOpts {
  env?: Env;
  /** Run the built binary in a process of its own (implied by `prefix` and `runtime`): for what only a process shows. */
  binary?: boolean;
  prefix?: string[];
  timeoutMs?: number;
  input?: string;
  runtime?: StagedCli;
}

/** Runs the CLI, in this process unless the run needs its own; every run must be free of stack traces. */
async function run(args: string[], o: RunOpts = {}): Promise<CofferResult> {
  const common = {
    env: env(o.env),
    cwd: base,
    ...(o.timeoutMs !== undefined ? { timeoutMs: o.timeoutMs } : {}),
    ...(o.input !== undefined ? { input: o.input } : {}),
  };
  const r =
    o.binary || o.prefix !== undefined || o.runtime !== undefined
      ? await coffer(args, { ...common, ...(o.prefix !== undefined ? { prefix: o.prefix } : {}), ...(o.runtime !== undefined ? { runtime: o.runtime } : {}) })
      : await cofferInProcess(args, common);
  expectNoStackTrace(r);
  return r;
}

async function ok(args: string[], o: RunOpts = {}): Promise<CofferResult> {
  return expectExit(await run(args, o), EXIT.OK);
}

async function createRepo(repo: string, extra: string[] = [], o: RunOpts = {}): Promise<void> {
  await ok(["at", repo, "create", ...FAST_KDF, ...extra], o);
  expect(existsSync(path.join(repo, "CONFIG")), `${repo}/CONFIG after create`).toBe(true);
}

interface BackupJson {
  id: string;
  files: number;
  dirs: number;
  bytes: number;
  errors: number;
  newBytes: number;
  readBytes: number;
}

async function backupJson(repo: string, src: string, extra: string[] = [], o: RunOpts & { code?: number } = {}): Promise<BackupJson> {
  const r = expectExit(await run(["at", repo, "backup", "--json", ...extra, src], o), o.code ?? EXIT.OK);
  const j = parseJson<BackupJson>(r);
  const where = describeRun(r);
  expect(j.id, where).toMatch(/^[0-9a-f]{64}$/);
  for (const k of ["files", "dirs", "bytes", "errors", "newBytes"] as const) expect(typeof j[k], `${k} in ${where}`).toBe("number");
  return j;
}

const short = (id: string) => id.slice(0, 8);

async function restoreInto(repo: string, snap: string | undefined, o: RunOpts & { code?: number } = {}): Promise<{ dir: string; r: CofferResult }> {
  const dir = fresh("restore");
  const r = expectExit(await run(["at", repo, "restore", "--to", dir, ...(snap !== undefined ? [snap] : [])], o), o.code ?? EXIT.OK);
  return { dir, r };
}

async function expectSameTree(expected: string, actual: string, opts: Parameters<typeof compareTrees>[2] = {}): Promise<void> {
  const diffs = await compareTrees(expected, actual, opts);
  expect(diffs, `differences between ${expected} and ${actual}:\n${diffs.join("\n")}`).toEqual([]);
}

/** Files under `dir` with their sizes. */
async function filesUnder(dir: string): Promise<{ file: string; size: number }[]> {
  const out: { file: string; size: number }[] = [];
  const visit = async (d: string) => {
    let ents;
    try {
      ents = await fsp.readdir(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of ents) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) await visit(p);
      else if (e.isFile()) out.push({ file: p, size: (await fsp.stat(p).catch(() => ({ size: 0 }))).size });
    }
  };
  await visit(dir);
  return out;
}

/** Packfiles of an fs repository: packfiles/XX/<64 hex>. */
async function packfiles(repo: string): Promise<{ file: string; size: number }[]> {
  return (await filesUnder(path.join(repo, "packfiles"))).filter((f) => /\/[0-9a-f]{2}\/[0-9a-f]{64}$/.test(f.file));
}

async function repoBytes(repo: string): Promise<number> {
  return (await filesUnder(repo)).reduce((n, f) => n + f.size, 0);
}

async function rm(p: string): Promise<void> {
  await fsp.rm(p, { recursive: true, force: true });
}

/**
 * Whether some line of `ls -R` output names the entry at `rel` (no leading
 * '/'): its last field is the path ("/rel" or "rel", after a blank or at the
 * line start), optionally followed by " -> TARGET" for a symlink.
 */
/** Whether `ls -R` shows the entry: its path (and target) in the escaped display form (GNU ls -b's). */
function listedPath(out: string[], rel: string, target?: string): boolean {
  const shown = escapeName(`/${rel}`) + (target !== undefined ? ` -> ${escapeName(target)}` : "");
  return out.some((line) => line.endsWith(` ${shown}`));
}

/** Whether some line of a directory listing ends with the child's `name` (alone, or as the last component of its path). */
function listedName(out: string[], name: string): boolean {
  return out.some((line) => {
    const l = line.replace(/\r$/, "");
    return l === name || l.endsWith(`/${name}`) || l.endsWith(` ${name}`) || l.endsWith(`\t${name}`);
  });
}

let awkwardPromise: Promise<AwkwardTree> | undefined;
/** The awkward tree, built once per file (it is never modified). */
function awkward(): Promise<AwkwardTree> {
  awkwardPromise ??= makeAwkwardTree(path.join(base, "awkward"));
  return awkwardPromise;
}

beforeAll(async () => {
  if (!builtCliExists()) throw new Error(`${BUILT_MAIN} is missing: run \`npm run build\` before the e2e tests`);
  if (!isRoot) throw new Error("the e2e suite needs root (chown, setuid bits, setpriv)");
  base = await fsp.mkdtemp(path.join(tmpdir(), "coffer-e2e-"));
  await fsp.chmod(base, 0o755);
  home = path.join(base, "home");
  await fsp.mkdir(home);
  await fsp.mkdir(path.join(base, "tmp"), { mode: 0o1777 });
  await fsp.chmod(path.join(base, "tmp"), 0o1777);
});

afterAll(async () => {
  if (base) await rm(base);
});

// --------------------------------------------------------------------------

describe("round trip of the awkward tree", () => {
  let tree: AwkwardTree;
  let repo: string;
  let first: BackupJson;

  beforeAll(async () => {
    tree = await awkward();
    repo = fresh("repo-main");
    await createRepo(repo);
    first = await backupJson(repo, tree.root, ["--tag", "first", "--tag", "awkward"]);
  });

  it("backup --json summarises the tree", async () => {
    const entries = [...(await walkTree(tree.root, { hashes: false })).values()];
    const files = entries.filter((e) => e.kind === "file");
    const dirs = entries.filter((e) => e.kind === "dir");
    expect(first.errors).toBe(0);
    expect(first.files).toBe(files.length);
    expect([dirs.length, dirs.length - 1]).toContain(first.dirs);
    const perPath = files.reduce((n, e) => n + Number(e.size), 0);
    const perInode = [...new Map(files.map((e) => [e.inode, Number(e.size)])).values()].reduce((n, s) => n + s, 0);
    expect([perPath, perInode]).toContain(first.bytes);
    // New raw bytes: the file contents (deduplicated) plus metadata.
    expect(first.newBytes).toBeGreaterThan(tree.bigFileSize);
  });

  it("restores into a fresh directory with no difference", async () => {
    const { dir, r } = await restoreInto(repo, short(first.id));
    await expectSameTree(tree.root, dir);
    expect(r.stderr).not.toMatch(/warning/i);
    await rm(dir);
  });

  it("keeps the holes of a sparse file", async () => {
    const { dir } = await restoreInto(repo, `${short(first.id)}:${tree.sparseFile}`);
    const st = await fsp.stat(path.join(dir, path.basename(tree.sparseFile)));
    expect(st.size).toBe(tree.sparseFileSize);
    expect(st.blocks * 512, "allocated bytes of the restored sparse file").toBeLessThan(tree.sparseFileSize / 2);
    await rm(dir);
  });

  it("restores a single file into DIR/<name> and a directory's contents into DIR", async () => {
    const f = await restoreInto(repo, `${short(first.id)}:${tree.unicodeFile}`);
    expect(await fsp.readdir(f.dir)).toEqual([path.basename(tree.unicodeFile)]);
    expect(await hashFile(path.join(f.dir, path.basename(tree.unicodeFile)))).toBe(await hashFile(path.join(tree.root, tree.unicodeFile)));
    const d = await restoreInto(repo, `${short(first.id)}:${tree.namesDir}`);
    await expectSameTree(path.join(tree.root, tree.namesDir), d.dir);
    await rm(f.dir);
    await rm(d.dir);
  });

  it("ls lists the snapshot; ls --json has its fields", async () => {
    const out = lines((await ok(["at", repo, "ls"])).stdout);
    expect(out.some((l) => l.startsWith(short(first.id))), out.join("\n")).toBe(true);
    const r = await ok(["at", repo, "ls", "--json"]);
    const list = parseJson<Record<string, unknown>[]>(r);
    expect(Array.isArray(list), describeRun(r)).toBe(true);
    const me = list.find((s) => s.id === first.id);
    expect(me, describeRun(r)).toBeDefined();
    for (const k of ["id", "time", "hostname", "source", "tags", "files", "bytes"]) expect(me, `field ${k}`).toHaveProperty(k);
    expect(me?.tags).toEqual(expect.arrayContaining(["first", "awkward"]));
    expect(me?.files).toBe(first.files);
    expect(me?.bytes).toBe(first.bytes);
    expect(String(me?.source)).toContain(tree.root);
  });

  it("ls -R SNAP lists every entry", async () => {
    const r = await ok(["at", repo, "ls", "-R", short(first.id)]);
    const out = lines(r.stdout);
    const entries = [...(await walkTree(tree.root, { hashes: false })).values()].filter((e) => e.rel !== "");
    const missing = entries.filter((e) => !listedPath(out, e.rel, e.target)).map((e) => e.rel);
    expect(missing, `entries not listed by ls -R:\n${describeRun(r, 20000)}`).toEqual([]);
    expect(out.length).toBeGreaterThanOrEqual(entries.length);
  });

  it("ls SNAP:/dir lists that directory only", async () => {
    const r = await ok(["at", repo, "ls", `${short(first.id)}:${tree.textDir}`]);
    const out = lines(r.stdout);
    expect(out.length, describeRun(r)).toBe(tree.textDirNames.length);
    for (const n of tree.textDirNames) expect(listedName(out, n), `${n} in\n${describeRun(r)}`).toBe(true);
  });

  it("cat SNAP:PATH writes the exact bytes", async () => {
    for (const p of [tree.bigFile, tree.unicodeFile, tree.emptyFile, tree.sparseFile, "/chunks/size-8388609", "/names/new\nline"]) {
      const r = expectExit(await run(["at", repo, "cat", `${short(first.id)}:${p}`]), EXIT.OK);
      const want = await fsp.readFile(path.join(tree.root, p));
      expect(r.stdoutBytes.length, `size of cat ${p}`).toBe(want.length);
      expect(r.stdoutBytes.equals(want), `content of cat ${p}`).toBe(true);
    }
  });

  it("info and info SNAP", async () => {
    const a = await ok(["at", repo, "info"]);
    expect(a.stdout.trim()).not.toBe("");
    const b = await ok(["at", repo, "info", short(first.id)]);
    expect(b.stdout).toContain(short(first.id));
    parseJson(await ok(["at", repo, "info", "--json"]));
    const j = parseJson<Record<string, unknown>>(await ok(["at", repo, "info", "--json", short(first.id)]));
    expect(JSON.stringify(j)).toContain(short(first.id));
  });

  it("check finds an intact repository fine", async () => {
    await ok(["at", repo, "check"]);
    await ok(["at", repo, "check", "--fast"]);
    await ok(["at", repo, "check", short(first.id)]);
    parseJson(await ok(["at", repo, "check", "--json"]));
  });

  it("a second backup of the unchanged tree adds almost nothing and restores the same", async () => {
    const before = await repoBytes(repo);
    const second = await backupJson(repo, tree.root);
    const after = await repoBytes(repo);
    expect(second.id).not.toBe(first.id);
    expect(second.newBytes, "newBytes of an unchanged backup").toBeLessThanOrEqual(16 * KiB);
    expect(second.readBytes, "an unchanged backup reads no file (each is found in its parent's listing)").toBe(0);
    expect(first.readBytes).toBeGreaterThan(0);
    expect(after - before, `repository grew from ${before} to ${after}`).toBeLessThan(before * 0.01 + 16 * KiB);
    expect(second.files).toBe(first.files);
    expect(second.bytes).toBe(first.bytes);
    const out = lines((await ok(["at", repo, "ls"])).stdout);
    expect(out.some((l) => l.startsWith(short(second.id))), out.join("\n")).toBe(true);
    expect(out.some((l) => l.startsWith(short(first.id))), out.join("\n")).toBe(true);
    // Entries reused from the parent must restore as well as read ones.
    const { dir } = await restoreInto(repo, short(second.id));
    await expectSameTree(tree.root, dir);
    await rm(dir);
  });
});

// --------------------------------------------------------------------------

describe("incremental backup", () => {
  it("a single file as the source is found in its parent and not read again; changed, it is", async () => {
    const dir = fresh("single-src");
    await fsp.mkdir(dir, { recursive: true });
    const file = path.join(dir, "one.bin");
    await writeSeededFile(file, "single-file", 3 * MiB);
    const repo = fresh("single-repo");
    await createRepo(repo);
    const a = await backupJson(repo, file);
    expect(a.readBytes).toBe(3 * MiB);
    const b = await backupJson(repo, file);
    expect(b.readBytes).toBe(0);
    await fsp.appendFile(file, "more");
    const c = await backupJson(repo, file);
    expect(c.readBytes).toBe(3 * MiB + 4);
  });

  it("a modified file is in the new snapshot and the old one keeps the old content", async () => {
    const src = fresh("incr-src");
    await fsp.mkdir(path.join(src, "dir"), { recursive: true });
    await writeSeededFile(path.join(src, "data.bin"), "incr-data", 6 * MiB);
    await fsp.writeFile(path.join(src, "a.txt"), "unchanged\n");
    await fsp.writeFile(path.join(src, "dir/b.txt"), compressibleText(100 * KiB));
    const oldCopy = fresh("incr-old");
    copyTree(src, oldCopy);

    const repo = fresh("incr-repo");
    await createRepo(repo);
    const r1 = await run(["at", repo, "backup", src]);
    expectExit(r1, EXIT.OK);
    const id1 = r1.stdout.trim();
    expect(id1, `backup prints the short ID\n${describeRun(r1)}`).toMatch(/^[0-9a-f]{8}$/);

    // Change one byte in the middle (same size), and add a file.
    const fh = await fsp.open(path.join(src, "data.bin"), "r+");
    await fh.write(Buffer.from([0x42 ^ seededBytes("incr-data", 3 * MiB + 1)[3 * MiB]!]), 0, 1, 3 * MiB);
    await fh.close();
    await fsp.writeFile(path.join(src, "dir/new.txt"), "new file\n");
    const second = await backupJson(repo, src);
    expect(second.newBytes, "only the changed chunk(s) and metadata are new").toBeGreaterThan(0);
    expect(second.newBytes).toBeLessThan(0.75 * 6 * MiB);

    const latest = await restoreInto(repo, undefined); // no SNAP: the latest
    await expectSameTree(src, latest.dir);
    const old = await restoreInto(repo, id1);
    await expectSameTree(oldCopy, old.dir);
    expect(await hashFile(path.join(old.dir, "data.bin"))).not.toBe(await hashFile(path.join(latest.dir, "data.bin")));
    for (const d of [src, oldCopy, repo, latest.dir, old.dir]) await rm(d);
  });
});

// --------------------------------------------------------------------------

describe("repository variants", () => {
  it("a plaintext repository round-trips without any passphrase", async () => {
    const tree = await awkward();
    const repo = fresh("plain-repo");
    const noPass = { env: { COFFER_PASSPHRASE: undefined } };
    await ok(["at", repo, "create", "--plaintext"], noPass);
    const j = await backupJson(repo, tree.root, [], noPass);
    expect(j.errors).toBe(0);
    await ok(["at", repo, "ls"], noPass);
    const { dir } = await restoreInto(repo, short(j.id), noPass);
    await expectSameTree(tree.root, dir);
    await ok(["at", repo, "check"], noPass);
    await rm(dir);
    await rm(repo);
  });

  it("create without KDF flags records argon2id 64 MiB, 3 passes, 4 lanes; one flag keeps the other defaults", async () => {
    const kdfOf = async (repo: string) => {
      const r = await ok(["at", repo, "info"]);
      return /argon2id m=(\d+)MiB t=(\d+) p=(\d+)/.exec(r.stdout)?.slice(1).join(" ") ?? describeRun(r);
    };
    const plain = fresh("kdf-default");
    await ok(["at", plain, "create"]);
    expect(await kdfOf(plain)).toBe("64 3 4");
    const more = fresh("kdf-memory");
    await ok(["at", more, "create", "--kdf-memory", "8"]);
    expect(await kdfOf(more)).toBe("8 3 4");
    const help = await ok(["create", "--help"]);
    expect(help.stdout).toMatch(/--kdf-memory <MiB>\s+argon2id memory \(default 64\)/);
    expect(help.stdout).toMatch(/--kdf-passes <n>\s+argon2id passes \(default 3\)/);
    await rm(plain);
    await rm(more);
  });

  it("--hashing sha256 --compression none round-trips and still encrypts", async () => {
    const tree = await awkward();
    const repo = fresh("sha256-repo");
    await createRepo(repo, ["--hashing", "sha256", "--compression", "none"]);
    const j = await backupJson(repo, tree.root);
    const { dir } = await restoreInto(repo, short(j.id));
    await expectSameTree(tree.root, dir);
    await ok(["at", repo, "check"]);
    // Uncompressed but encrypted: the text must not appear in any packfile.
    const marker = compressibleText(300 * KiB).subarray(150_000, 150_064);
    for (const p of await packfiles(repo)) expect((await fsp.readFile(p.file)).includes(marker), `plaintext found in ${p.file}`).toBe(false);
    await rm(dir);
    await rm(repo);
  });

  it("--plaintext --compression none stores content in the clear (control of the check above)", async () => {
    const src = fresh("clear-src");
    await fsp.mkdir(src);
    await fsp.writeFile(path.join(src, "lorem.txt"), compressibleText(300 * KiB));
    const repo = fresh("clear-repo");
    // no passphrase: one given for a plaintext repository is refused (docs/CLI.md, "Known repositories")
    const noPass = { env: { COFFER_PASSPHRASE: undefined } };
    await ok(["at", repo, "create", "--plaintext", "--compression", "none"], noPass);
    await backupJson(repo, src, [], noPass);
    const marker = compressibleText(300 * KiB).subarray(150_000, 150_064);
    let found = false;
    for (const p of await packfiles(repo)) found ||= (await fsp.readFile(p.file)).includes(marker);
    expect(found).toBe(true);
    await rm(src);
    await rm(repo);
  });
});

// --------------------------------------------------------------------------

describe("repository resolution, passphrases and exit codes", () => {
  let repo: string;
  let src: string;

  beforeAll(async () => {
    src = fresh("small-src");
    await fsp.mkdir(path.join(src, "sub"), { recursive: true });
    await fsp.writeFile(path.join(src, "a.txt"), "alpha\n");
    await fsp.writeFile(path.join(src, "sub/b.txt"), "beta\n");
    repo = fresh("small-repo");
    await createRepo(repo);
    await backupJson(repo, src);
  });

  it("a wrong passphrase exits 12", async () => {
    const wrong = { env: { COFFER_PASSPHRASE: "not the passphrase" }, binary: true };
    for (const args of [["ls"], ["backup", src], ["restore", "--to", fresh("wrong")], ["info"]]) {
      const r = await run(["at", repo, ...args], wrong);
      expectExit(r, EXIT.WRONG_PASSPHRASE);
      expect(r.stderr.trim(), describeRun(r)).not.toBe("");
    }
  });

  it("no passphrase and no TTY: exits 2 promptly with a message (never waits for input)", async () => {
    // The binary: what its real stdin (/dev/null, an empty pipe) does.
    const none = { env: { COFFER_PASSPHRASE: undefined }, timeoutMs: 20_000, binary: true };
    for (const args of [["at", repo, "ls"], ["at", repo, "backup", src], ["at", fresh("nopass-create"), "create", ...FAST_KDF]]) {
      const r = await run(args, none);
      expect(r.timedOut, describeRun(r)).toBe(false);
      expectExit(r, EXIT.USAGE);
      expect(r.stderr.trim(), describeRun(r)).not.toBe("");
    }
    // stdin an empty pipe rather than /dev/null: same.
    const r = await run(["at", repo, "ls"], { ...none, input: "" });
    expect(r.timedOut, describeRun(r)).toBe(false);
    expectExit(r, EXIT.USAGE);
  });

  it("a missing repository exits 10", async () => {
    const missing = fresh("no-such-repo");
    for (const args of [
      ["at", missing, "ls"],
      ["at", missing, "info"],
      ["at", missing, "restore", "--to", fresh("x")],
      ["at", "/nonexistent", "backup", src],
      ["at", "/nonexistent", "ls"],
    ]) {
      const r = await run(args);
      expectExit(r, EXIT.NO_REPOSITORY);
      expect(r.stderr.trim(), describeRun(r)).not.toBe("");
    }
    expect(existsSync(missing), "a read command must not create the repository").toBe(false);
    // From COFFER_REPOSITORY, and from ~/.coffer.
    expectExit(await run(["ls"], { env: { COFFER_REPOSITORY: missing } }), EXIT.NO_REPOSITORY);
    const emptyHome = fresh("empty-home");
    await fsp.mkdir(emptyHome);
    expectExit(await run(["ls"], { env: { HOME: emptyHome } }), EXIT.NO_REPOSITORY);
  });

  it("the repository comes from COFFER_REPOSITORY, else ~/.coffer", async () => {
    const viaEnv = fresh("env-repo");
    const e = { env: { COFFER_REPOSITORY: viaEnv } };
    await ok(["create", ...FAST_KDF], e);
    expect(existsSync(path.join(viaEnv, "CONFIG"))).toBe(true);
    const r = await ok(["backup", src], e);
    const id = r.stdout.trim();
    expect(lines((await ok(["ls"], e)).stdout).some((l) => l.startsWith(id))).toBe(true);

    const h = fresh("home-with-repo");
    await fsp.mkdir(h);
    const e2 = { env: { HOME: h } };
    await ok(["create", ...FAST_KDF], e2);
    expect(existsSync(path.join(h, ".coffer", "CONFIG"))).toBe(true);
    await ok(["backup", src], e2);
    expect(lines((await ok(["ls"], e2)).stdout).length).toBe(1);
    // `at` wins over COFFER_REPOSITORY.
    const both = await ok(["at", repo, "ls", "--json"], { env: { COFFER_REPOSITORY: viaEnv } });
    expect(parseJson<unknown[]>(both).length).toBe(1);
    await rm(viaEnv);
    await rm(h);
  });

  it("create on an existing repository is an error", async () => {
    const r = await run(["at", repo, "create", ...FAST_KDF]);
    expectExit(r, EXIT.ERROR);
    expect(r.stderr.trim()).not.toBe("");
  });

  it("--help lists the exit codes; unknown commands and options exit 2", async () => {
    // The binary: these are the process's exit statuses.
    const binary = { binary: true };
    const h = await ok(["--help"], binary);
    const text = h.stdout + h.stderr;
    for (const code of [0, 1, 2, 3, 10, 11, 12, 130]) {
      expect(text.split("\n").some((l) => new RegExp(`(^|\\s)${code}(\\s|$|:|\\))`).test(l)), `exit code ${code} in --help:\n${text}`).toBe(true);
    }
    expect(text).toMatch(/exit/i);
    for (const args of [["frobnicate"], ["at", repo, "frobnicate"], ["at", repo, "ls", "--no-such-option"]]) {
      const r = await run(args, binary);
      expectExit(r, EXIT.USAGE);
      expect(r.stderr.trim(), describeRun(r)).not.toBe("");
    }
  });
});

// --------------------------------------------------------------------------

describe("snapshot prefixes", () => {
  it("an unknown prefix exits 1, an ambiguous one exits 2", async () => {
    const src = fresh("prefix-src");
    await fsp.mkdir(src);
    await fsp.writeFile(path.join(src, "a.txt"), "prefix test\n");
    const repo = fresh("prefix-repo");
    await createRepo(repo);
    const ids: string[] = [];
    let dup: string | undefined;
    while (dup === undefined && ids.length < 17) {
      const r = expectExit(await run(["at", repo, "backup", src]), EXIT.OK);
      const id = r.stdout.trim();
      expect(id, describeRun(r)).toMatch(/^[0-9a-f]{8}$/);
      if (ids.some((x) => x[0] === id[0])) dup = id[0];
      ids.push(id);
    }
    expect(dup, `two of ${ids.join(" ")} share a first digit`).toBeDefined();
    const amb = dup as string;
    const listing = lines((await ok(["at", repo, "ls"])).stdout);
    for (const id of ids) expect(listing.some((l) => l.startsWith(id)), `${id} in\n${listing.join("\n")}`).toBe(true);

    for (const args of [["info", amb], ["ls", amb], ["cat", `${amb}:/a.txt`], ["restore", "--to", fresh("amb"), amb], ["check", amb]]) {
      const r = await run(["at", repo, ...args]);
      expectExit(r, EXIT.USAGE);
      expect(r.stderr.trim(), describeRun(r)).not.toBe("");
    }
    const unknown = "0123456789abcdef".split("").find((c) => !ids.some((x) => x[0] === c)) as string;
    for (const args of [["info", unknown], ["ls", `${unknown}:/`], ["cat", `${unknown}:/a.txt`], ["restore", "--to", fresh("unk"), unknown], ["info", "deadbeefdeadbeef"]]) {
      if (args[1] === "deadbeefdeadbeef" && ids.some((x) => "deadbeefdeadbeef".startsWith(x))) continue;
      const r = await run(["at", repo, ...args]);
      expectExit(r, EXIT.ERROR);
      expect(r.stderr.trim(), describeRun(r)).not.toBe("");
    }
    // A unique prefix works, and so does a whole ID.
    const one = ids[0] as string;
    expect((await ok(["at", repo, "cat", `${one}:/a.txt`])).stdout).toBe("prefix test\n");
    const full = parseJson<{ id: string }[]>(await ok(["at", repo, "ls", "--json"])).find((s) => s.id.startsWith(one));
    expect(full).toBeDefined();
    expect((await ok(["at", repo, "cat", `${full?.id}:/a.txt`])).stdout).toBe("prefix test\n");
    await rm(repo);
    await rm(src);
  });
});

// --------------------------------------------------------------------------

describe("excludes", () => {
  let src: string;
  let repo: string;

  beforeAll(async () => {
    src = fresh("excl-src");
    const files = ["keep.txt", "debug.log", "sub/trace.log", "sub/keep2.txt", "build/out.o", "sub/build/x.o", "sub/deeper/build", "cache.tmp", "secret/key", "notes/secret"];
    for (const f of files) {
      await fsp.mkdir(path.dirname(path.join(src, f)), { recursive: true });
      await fsp.writeFile(path.join(src, f), `${f}\n`);
    }
    repo = fresh("excl-repo");
    await createRepo(repo);
  });

  async function listing(snap: string): Promise<string[]> {
    return lines((await ok(["at", repo, "ls", "-R", snap])).stdout);
  }

  it("--exclude '*.log' --exclude 'build/' leaves those entries out", async () => {
    const j = await backupJson(repo, src, ["--exclude", "*.log", "--exclude", "build/"]);
    const out = await listing(short(j.id));
    for (const gone of ["debug.log", "sub/trace.log", "build", "build/out.o", "sub/build", "sub/build/x.o"]) {
      expect(listedPath(out, gone), `${gone} excluded but listed:\n${out.join("\n")}`).toBe(false);
    }
    for (const kept of ["keep.txt", "sub/keep2.txt", "sub/deeper/build", "cache.tmp", "secret/key", "notes/secret"]) {
      expect(listedPath(out, kept), `${kept} missing:\n${out.join("\n")}`).toBe(true);
    }
    const { dir } = await restoreInto(repo, short(j.id));
    expect(existsSync(path.join(dir, "debug.log"))).toBe(false);
    expect(existsSync(path.join(dir, "build"))).toBe(false);
    expect(existsSync(path.join(dir, "sub/build"))).toBe(false);
    expect(await fsp.readFile(path.join(dir, "sub/deeper/build"), "utf8")).toBe("sub/deeper/build\n");
    await rm(dir);
  });

  it("--exclude-file reads patterns (comments and blank lines ignored)", async () => {
    const f = fresh("excludes.txt");
    await fsp.writeFile(f, "# temporary files\n*.tmp\n\nsecret/\n");
    const j = await backupJson(repo, src, ["--exclude-file", f]);
    const out = await listing(short(j.id));
    for (const gone of ["cache.tmp", "secret", "secret/key"]) expect(listedPath(out, gone), `${gone} excluded but listed:\n${out.join("\n")}`).toBe(false);
    for (const kept of ["notes/secret", "debug.log", "build/out.o", "keep.txt"]) expect(listedPath(out, kept), `${kept} missing:\n${out.join("\n")}`).toBe(true);
  });
});

// --------------------------------------------------------------------------

describe.skipIf(lacks(hasSetpriv, "setpriv (util-linux)"))("an unreadable entry (backup run as nobody)", () => {
  it("exits 3 naming the path, records it, and the rest restores", async () => {
    const work = fresh("nobody");
    const src = path.join(work, "src");
    await fsp.mkdir(path.join(src, "sub"), { recursive: true });
    await fsp.writeFile(path.join(src, "ok.txt"), "readable\n");
    await fsp.writeFile(path.join(src, "sub/other.txt"), compressibleText(50 * KiB));
    await fsp.writeFile(path.join(src, "secret.bin"), "only root could read this\n");
    await fsp.chmod(path.join(src, "secret.bin"), 0o000);
    for (const d of [work, src, path.join(src, "sub")]) await fsp.chmod(d, 0o755);
    const repo = path.join(work, "repo");
    await createRepo(repo);
    const nobodyHome = path.join(work, "home");
    const nobodyTmp = path.join(work, "tmp");
    await fsp.mkdir(nobodyHome);
    await fsp.mkdir(nobodyTmp);
    execFileSync("chown", ["-R", "65534:65534", repo, nobodyHome, nobodyTmp]);

    // nobody cannot be assumed to reach the checkout (it may sit in a 0700
    // directory): it runs a copy of the built CLI and of Node from `work`.
    const asNobody = {
      prefix: ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"],
      // the caller's PATH may name directories nobody cannot search (under /root)
      env: { HOME: nobodyHome, TMPDIR: nobodyTmp, PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" },
      runtime: await stageCli(path.join(work, "cli")),
    };
    const started = await coffer(["--help"], { ...asNobody, env: env(asNobody.env), cwd: work });
    expect(
      started.exitCode === 0 && !hasStackTrace(started.stderr) ? "started" : `nobody could not start the staged CLI (${asNobody.runtime.bin}); every directory above ${work} must be enterable by all users (TMPDIR=${tmpdir()}): ${started.stderr.split("\n").find((l) => /Error|denied/.test(l)) ?? started.stderr.trim()}`,
    ).toBe("started");
    const r = await run(["at", repo, "backup", src], asNobody);
    expectExit(r, EXIT.PARTIAL);
    expect(r.stdout.trim(), describeRun(r)).toMatch(/^[0-9a-f]{8}$/);
    expect(r.stderr + r.stdout, `the failing path is named\n${describeRun(r)}`).toContain("secret.bin");
    const id = r.stdout.trim();

    const snaps = parseJson<{ id: string; errors?: number }[]>(await ok(["at", repo, "ls", "--json"]));
    expect(snaps.map((s) => s.id.slice(0, 8))).toEqual([id]);
    if (snaps[0]?.errors !== undefined) expect(snaps[0].errors).toBe(1);

    const dir = fresh("nobody-restore");
    const rr = await run(["at", repo, "restore", "--to", dir, id]);
    expectExit(rr, EXIT.OK, EXIT.PARTIAL);
    await expectSameTree(src, dir, { ignore: (rel) => rel === "secret.bin" });
    await rm(work);
    await rm(dir);
  });
});

// --------------------------------------------------------------------------

describe("a corrupted packfile", () => {
  it("check names the snapshot and file; check --fast does not read content; restore exits 3 and restores the rest", async () => {
    const src = fresh("corrupt-src");
    await fsp.mkdir(path.join(src, "sub"), { recursive: true });
    await fsp.writeFile(path.join(src, "a.txt"), compressibleText(20 * KiB, "a"));
    await writeSeededFile(path.join(src, "big.bin"), "corrupt-big", 20 * MiB);
    await fsp.writeFile(path.join(src, "c.txt"), compressibleText(30 * KiB, "c"));
    await fsp.writeFile(path.join(src, "sub/d.txt"), compressibleText(40 * KiB, "d"));
    const repo = fresh("corrupt-repo");
    await createRepo(repo);
    const j = await backupJson(repo, src);
    const id = short(j.id);

    const packs = (await packfiles(repo)).sort((x, y) => y.size - x.size);
    const largest = packs[0];
    expect(largest, "a packfile").toBeDefined();
    if (!largest) return;
    expect(largest.size).toBeGreaterThan(10 * MiB);
    const fh = await fsp.open(largest.file, "r+");
    const b = Buffer.alloc(1);
    const at = Math.floor(largest.size / 2);
    await fh.read(b, 0, 1, at);
    b[0] = (b[0] as number) ^ 0x20;
    await fh.write(b, 0, 1, at);
    await fh.close();

    // --fast does not read content: it cannot see the flipped byte.
    expectExit(await run(["at", repo, "check", "--fast"]), EXIT.OK);
    const c = await run(["at", repo, "check"]);
    expectExit(c, EXIT.ERROR);
    const cout = c.stdout + c.stderr;
    expect(cout, describeRun(c)).toContain(id);
    expect(cout, describeRun(c)).toContain("/big.bin");
    expect(cout, `only big.bin is damaged\n${describeRun(c)}`).not.toMatch(/\/(a|c)\.txt|\/sub\/d\.txt/);
    expectExit(await run(["at", repo, "check", id]), EXIT.ERROR);
    // What the full check found is recorded in the state: --fast now reports it too.
    const fast = expectExit(await run(["at", repo, "check", "--fast"]), EXIT.ERROR);
    expect(fast.stdout, describeRun(fast)).toContain("recorded as damaged");

    const cat = await run(["at", repo, "cat", `${id}:/big.bin`]);
    expect(cat.exitCode, describeRun(cat)).not.toBe(EXIT.OK);

    const dir = fresh("corrupt-restore");
    const r = await run(["at", repo, "restore", "--to", dir, id]);
    expectExit(r, EXIT.PARTIAL);
    expect(r.stderr, describeRun(r)).toContain("/big.bin");
    await expectSameTree(src, dir, { ignore: (rel) => rel === "big.bin", rootMeta: false });
    await rm(dir);
    await rm(repo);
    await rm(src);
  });
});

// --------------------------------------------------------------------------

describe("large trees: crash safety, interruption, concurrency", () => {
  let big: string;
  let total = 0;

  beforeAll(async () => {
    big = fresh("big-src");
    for (let d = 0; d < 3; d++) {
      await fsp.mkdir(path.join(big, `d${d}`), { recursive: true });
      for (let f = 0; f < 10; f++) await writeSeededFile(path.join(big, `d${d}`, `f${f}.bin`), `big-${d}-${f}`, 10 * MiB);
    }
    total = await treeBytes(big);
  });
  afterAll(async () => {
    if (big) await rm(big);
  });

  /** The big tree's files, in a fixed order: what the stream backups below are fed. */
  const bigFiles = () => [0, 1, 2].flatMap((d) => Array.from({ length: 10 }, (_, f) => path.join(big, `d${d}`, `f${f}.bin`)));

  /**
   * Pipes `files` into a backup's open stdin; ends it only when `end` is
   * set. A backup of `stdin:NAME` cannot finish before its input ends, so a
   * test that leaves it open can signal the backup at leisure: no race
   * between the signal and the end of the backup.
   */
  async function feed(job: RunningCoffer, files: string[], end: boolean): Promise<void> {
    async function* concat() {
      for (const f of files) yield* createReadStream(f);
    }
    await pipeline(concat, job.child.stdin!, { end });
  }

  /** Resolves once `repo` holds at least `n` packfiles (files appearing: no delay); rejects if `run` ends first. */
  async function waitForPacks(repo: string, n: number, running: Promise<CofferResult>): Promise<void> {
    let ended: CofferResult | undefined;
    void running.then((r) => (ended = r));
    const deadline = Date.now() + 120_000; // a bound for a hung backup, not a timing assumption
    while (Date.now() < deadline) {
      if ((await packfiles(repo)).length >= n) return;
      if (ended) throw new Error(`the backup ended before ${n} packfiles were written\n${describeRun(ended)}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error(`no ${n} packfiles after 120 s`);
  }

  /** Resolves once `jobs.length` backups hold a lock on `repo` at the same time; rejects if one ends first. */
  async function waitForLocks(repo: string, jobs: RunningCoffer[]): Promise<void> {
    let ended: CofferResult | undefined;
    for (const j of jobs) void j.result.then((r) => (ended ??= r));
    const deadline = Date.now() + 120_000;
    while (Date.now() < deadline) {
      const locks = await fsp.readdir(path.join(repo, "locks")).catch(() => []);
      if (locks.filter((l) => /^[0-9a-f]+$/.test(l)).length >= jobs.length) return;
      if (ended) throw new Error(`a backup ended before ${jobs.length} locks were held\n${describeRun(ended)}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error(`no ${jobs.length} locks held at once after 120 s`);
  }

  it("a SIGKILLed backup leaves no snapshot and an intact repository; the next one reuses its packfiles", async () => {
    const repo = fresh("crash-repo");
    await createRepo(repo);
    const job = startCoffer(["at", repo, "backup", "--json", "stdin:big.bin"], { env: env(), cwd: base, openStdin: true });
    const fed = feed(job, bigFiles(), false).catch(() => {}); // fails with EPIPE once the backup is killed
    await waitForPacks(repo, 2, job.result);
    // The launcher re-executed itself (same PID) with coffer's V8 flags and malloc setting.
    if (process.platform === "linux") {
      const cmdline = (await fsp.readFile(`/proc/${job.child.pid}/cmdline`, "utf8")).split("\0");
      expect(cmdline).toContain("--max-semi-space-size=4");
      expect(cmdline).toContain("--heap-growing-percent=50");
      const environ = (await fsp.readFile(`/proc/${job.child.pid}/environ`, "utf8")).split("\0");
      expect(environ).toContain("GLIBC_TUNABLES=glibc.malloc.mmap_threshold=131072");
    }
    job.child.kill("SIGKILL");
    const killed = await job.result;
    job.child.stdin?.destroy();
    await fed;
    expect(killed.signal, describeRun(killed)).toBe("SIGKILL");

    const snaps = parseJson<unknown[]>(await ok(["at", repo, "ls", "--json"]));
    expect(snaps).toEqual([]);
    await ok(["at", repo, "check"]);

    const again = startCoffer(["at", repo, "backup", "--json", "stdin:big.bin"], { env: env(), cwd: base, openStdin: true });
    await feed(again, bigFiles(), true);
    const r = expectExit(await again.result, EXIT.OK);
    expectNoStackTrace(r);
    const j = parseJson<BackupJson>(r);
    expect(j.bytes).toBe(total);
    expect(j.newBytes, `newBytes ${j.newBytes} of ${total}: uploaded packfiles reused`).toBeLessThanOrEqual(total - 16 * MiB);
    await ok(["at", repo, "check"]);
    const { dir } = await restoreInto(repo, short(j.id));
    const whole = createHash("sha256");
    for (const f of bigFiles()) whole.update(await fsp.readFile(f));
    expect(await hashFile(path.join(dir, "big.bin"))).toBe(whole.digest("hex"));
    await rm(dir);
    await rm(repo);
  });

  it("SIGINT interrupts a backup with exit 130 and no snapshot", async () => {
    const repo = fresh("int-repo");
    await createRepo(repo);
    const job = startCoffer(["at", repo, "backup", "stdin:big.bin"], { env: env(), cwd: base, openStdin: true });
    const fed = feed(job, bigFiles(), false).catch(() => {});
    await waitForPacks(repo, 1, job.result);
    job.child.kill("SIGINT");
    const r = await job.result;
    job.child.stdin?.destroy();
    await fed;
    expectExit(r, EXIT.INTERRUPTED);
    expectNoStackTrace(r);
    expect(parseJson<unknown[]>(await ok(["at", repo, "ls", "--json"]))).toEqual([]);
    await ok(["at", repo, "check"]);
    await rm(repo);
  });

  it("two concurrent backups (shared locks) both succeed", async () => {
    const repo = fresh("conc-repo");
    await createRepo(repo);
    const files = bigFiles().slice(0, 10);
    const a = startCoffer(["at", repo, "backup", "--json", "stdin:d0.bin"], { env: env(), cwd: base, openStdin: true });
    const b = startCoffer(["at", repo, "backup", "--json", "--tag", "b", "stdin:d0.bin"], { env: env(), cwd: base, openStdin: true });
    // Neither can finish before its input ends: both hold their shared lock at once, then both are fed.
    await waitForLocks(repo, [a, b]);
    await Promise.all([feed(a, files, true), feed(b, files, true)]);
    const [ra, rb] = await Promise.all([a.result, b.result]);
    for (const r of [ra, rb]) {
      expectNoStackTrace(r);
      expectExit(r, EXIT.OK);
    }
    const ja = parseJson<BackupJson>(ra);
    const jb = parseJson<BackupJson>(rb);
    const snaps = parseJson<{ id: string }[]>(await ok(["at", repo, "ls", "--json"]));
    expect(snaps.map((s) => s.id).sort()).toEqual([ja.id, jb.id].sort());
    expect(await fsp.readdir(path.join(repo, "locks")).catch(() => [])).toEqual([]);
    await ok(["at", repo, "check"]);
    const { dir } = await restoreInto(repo, short(jb.id));
    const whole = createHash("sha256");
    for (const f of files) whole.update(await fsp.readFile(f));
    expect(await hashFile(path.join(dir, "d0.bin"))).toBe(whole.digest("hex"));
    await rm(dir);
    await rm(repo);
  });

});
