/**
 * Issue 15, "smaller ones", end to end with the BUILT CLI (run `npm run
 * build` first; needs root, as the rest of the e2e suite: setpriv to run as
 * nobody, a tmpfs mount). Each test starts from the exact situation and
 * checks the exit code, the message naming the object, that no stack trace
 * is printed and that nothing stored is lost:
 *
 * 1. names on a terminal are escaped (GNU `ls -b` form), JSON keeps them exact;
 * 2. `create` refuses a location that holds anything but an empty directory;
 * 3. an unreadable lock is named, and stale once old by its mtime;
 * 4. `restore --to tar:FILE` refuses an existing FILE without --force;
 * 5. a SNAP:PATH that does not exist fails before anything is created;
 * 6. a full repository stops the backup with one "repository full" error;
 * 7. `coffer` without a command prints help on stderr, exit 2;
 * 8. `pkg create` keeps every path inside the manifest's directory;
 * 9. a packfile swapped for another fails authentication, naming it.
 */
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, promises as fsp } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
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
} from "../helpers/cli.js";
import { cofferInProcess } from "../helpers/in-process.js";
import { lacks, skipOrFail } from "../helpers/prerequisites.js";
import { stageCli, type StagedCli } from "../helpers/stage.js";
import { compareTrees, seededBytes } from "../helpers/tree.js";

const PASS = "issue fifteen passphrase";
const KiB = 1024;
const ESC = "\x1b";
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

function fresh(name: string): string {
  return path.join(base, `${String(++counter).padStart(3, "0")}-${name}`);
}

interface RunOpts {
  env?: Env;
  prefix?: string[];
  runtime?: StagedCli;
  cwd?: string;
}

/** Runs the CLI, in this process unless it runs as another user (`prefix`, `runtime`: the binary). */
async function run(args: string[], o: RunOpts = {}): Promise<CofferResult> {
  const common = { env: { HOME: home, TMPDIR: path.join(base, "tmp"), COFFER_PASSPHRASE: PASS, ...o.env }, cwd: o.cwd ?? base };
  const r =
    o.prefix !== undefined || o.runtime !== undefined
      ? await coffer(args, { ...common, ...(o.prefix !== undefined ? { prefix: o.prefix } : {}), ...(o.runtime !== undefined ? { runtime: o.runtime } : {}) })
      : await cofferInProcess(args, common);
  expectNoStackTrace(r);
  return r;
}

async function expectRun(code: number, args: string[], o: RunOpts = {}): Promise<CofferResult> {
  return expectExit(await run(args, o), code);
}

async function createRepo(repo: string): Promise<void> {
  await expectRun(EXIT.OK, ["at", repo, "create", ...FAST_KDF]);
}

async function backupId(repo: string, src: string, extra: string[] = []): Promise<string> {
  const r = await expectRun(EXIT.OK, ["at", repo, "backup", "--json", ...extra, src]);
  return parseJson<{ id: string }>(r).id;
}

/** Every entry under `root` (files with their SHA-256, directories, links), to show nothing was changed. */
async function fingerprint(root: string): Promise<string[]> {
  const st = await fsp.lstat(root).catch(() => null);
  if (!st) return ["(absent)"];
  if (!st.isDirectory()) return [`file ${st.size} ${createHash("sha256").update(await fsp.readFile(root)).digest("hex")} ${st.mtimeMs}`];
  const out: string[] = [];
  for (const e of (await fsp.readdir(root, { recursive: true, withFileTypes: true })).sort((a, b) => (path.join(a.parentPath, a.name) < path.join(b.parentPath, b.name) ? -1 : 1))) {
    const p = path.join(e.parentPath, e.name);
    const rel = path.relative(root, p);
    if (e.isFile()) {
      const s = await fsp.stat(p);
      out.push(`file ${rel} ${s.size} ${createHash("sha256").update(await fsp.readFile(p)).digest("hex")} ${s.mtimeMs}`);
    } else out.push(`${e.isDirectory() ? "dir" : "other"} ${rel}`);
  }
  return out;
}

/** Packfiles of an fs repository, smallest first. */
async function packfiles(repo: string): Promise<{ file: string; size: number; id: string }[]> {
  const out: { file: string; size: number; id: string }[] = [];
  for (const e of await fsp.readdir(path.join(repo, "packfiles"), { recursive: true, withFileTypes: true })) {
    if (!e.isFile() || !/^[0-9a-f]{64}$/.test(e.name)) continue;
    const file = path.join(e.parentPath, e.name);
    out.push({ file, size: (await fsp.stat(file)).size, id: e.name });
  }
  return out.sort((a, b) => a.size - b.size);
}

/** The ID of every snapshot `ls --json` lists. */
async function snapshotIds(repo: string): Promise<string[]> {
  return parseJson<{ id: string }[]>(await expectRun(EXIT.OK, ["at", repo, "ls", "--json"])).map((s) => s.id);
}

beforeAll(async () => {
  if (!builtCliExists()) throw new Error(`${BUILT_MAIN} is missing: run \`npm run build\` before the e2e tests`);
  if (!isRoot) throw new Error("the e2e suite needs root (setpriv, a tmpfs mount)");
  base = await fsp.mkdtemp(path.join(tmpdir(), "coffer-traps-"));
  await fsp.chmod(base, 0o755);
  home = path.join(base, "home");
  await fsp.mkdir(home);
  await fsp.mkdir(path.join(base, "tmp"), { mode: 0o1777 });
  await fsp.chmod(path.join(base, "tmp"), 0o1777);
});

afterAll(async () => {
  if (base) await fsp.rm(base, { recursive: true, force: true });
});

// --------------------------------------------------------------------------

/** Whether a terminal would act on something in `text`: an ESC, another C0 control but newline, C1, DEL. */
// eslint-disable-next-line no-control-regex
const TERMINAL_CONTROL = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/;

describe.skipIf(lacks(hasSetpriv, "setpriv (util-linux)"))("1. names on a terminal are escaped in the `ls -b` form", () => {
  // Raw bytes of the names (latin1: one char per byte).
  const ESC_NAME = "esc\x1b[31m\nname"; // shown as esc\033[31m\012name
  const BAD_NAME = "bad\xffname"; // shown as bad\377name
  const OK_NAME = "ok\x1b[32m.txt";
  const TAG = `tag${ESC}[1m`;

  it("backup (as nobody) names unreadable entries escaped; ls, info, check, restore and cat escape; JSON keeps exact strings", async () => {
    const work = fresh("names");
    const src = path.join(work, `src${ESC}[7m`);
    const b = (name: string) => Buffer.concat([Buffer.from(src + "/"), Buffer.from(name, "latin1")]);
    await fsp.mkdir(src, { recursive: true });
    await fsp.writeFile(b(ESC_NAME), "unreadable one\n");
    await fsp.writeFile(b(BAD_NAME), "unreadable two\n");
    await fsp.writeFile(b(OK_NAME), seededBytes("ok-name", 30 * KiB));
    await fsp.chmod(b(ESC_NAME), 0o000);
    await fsp.chmod(b(BAD_NAME), 0o000);
    for (const d of [work, src]) await fsp.chmod(d, 0o755);
    const repo = path.join(work, "repo");
    await createRepo(repo);
    const nobodyHome = path.join(work, "home");
    const nobodyTmp = path.join(work, "tmp");
    await fsp.mkdir(nobodyHome);
    await fsp.mkdir(nobodyTmp);
    execFileSync("chown", ["-R", "65534:65534", repo, nobodyHome, nobodyTmp]);
    const asNobody: RunOpts = {
      prefix: ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"],
      env: { HOME: nobodyHome, TMPDIR: nobodyTmp, PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" },
      runtime: await stageCli(path.join(work, "cli")),
      cwd: work,
    };
    const started = await coffer(["--help"], { ...asNobody, env: { ...asNobody.env, COFFER_PASSPHRASE: PASS }, cwd: work } as Parameters<typeof coffer>[1]);
    expect(started.exitCode === 0 && !hasStackTrace(started.stderr) ? "started" : `nobody could not start the staged CLI: ${started.stderr.trim()}`).toBe("started");

    const r = await expectRun(EXIT.PARTIAL, ["at", repo, "backup", "--tag", TAG, src], asNobody);
    const where = describeRun(r);
    expect(r.stderr, where).not.toMatch(TERMINAL_CONTROL);
    expect(r.stderr, where).toContain("coffer: /esc\\033[31m\\012name: cannot read");
    expect(r.stderr, where).toContain("coffer: /bad\\377name: cannot read");
    // Every line is a message of its own: no name's newline started one.
    for (const l of lines(r.stderr)) expect(l, where).toMatch(/^(coffer: |\d+ files, )/);
    const id = r.stdout.trim();
    expect(id, where).toMatch(/^[0-9a-f]{8}$/);

    // ls: tag and source escaped; --json: exact.
    const ls = await expectRun(EXIT.OK, ["at", repo, "ls"]);
    expect(ls.stdout, describeRun(ls)).not.toMatch(TERMINAL_CONTROL);
    expect(ls.stdout, describeRun(ls)).toContain(`src\\033[7m`);
    expect(ls.stdout, describeRun(ls)).toContain(`[tag\\033[1m]`);
    const json = parseJson<{ tags: string[]; source: string; errors: number }[]>(await expectRun(EXIT.OK, ["at", repo, "ls", "--json"]));
    expect(json.map((s) => [s.tags, s.source, s.errors])).toEqual([[[TAG], src, 2]]);
    const info = await expectRun(EXIT.OK, ["at", repo, "info", id]);
    expect(info.stdout, describeRun(info)).not.toMatch(TERMINAL_CONTROL);
    expect(info.stdout).toContain("tags         tag\\033[1m");

    // restore: the skipped entries are named escaped; the readable one comes back.
    const to = fresh("names-restore");
    const rr = await expectRun(EXIT.OK, ["at", repo, "restore", "--to", to, id]);
    expect(rr.stderr, describeRun(rr)).not.toMatch(TERMINAL_CONTROL);
    expect(rr.stderr, describeRun(rr)).toContain("coffer: skipped /esc\\033[31m\\012name: not in the snapshot");
    expect(rr.stderr, describeRun(rr)).toContain("coffer: skipped /bad\\377name: not in the snapshot");
    expect((await fsp.readFile(Buffer.concat([Buffer.from(to + "/"), Buffer.from(OK_NAME, "latin1")]))).equals(seededBytes("ok-name", 30 * KiB))).toBe(true);

    // cat of a path that is not there: PATH_NOT_FOUND, the path escaped.
    const cat = await expectRun(EXIT.ERROR, ["at", repo, "cat", `${id}:/no${ESC}[31msuch\nfile`]);
    expect(cat.stderr, describeRun(cat)).not.toMatch(TERMINAL_CONTROL);
    expect(cat.stderr).toBe(`coffer: /no\\033[31msuch\\012file: no such file or directory in snapshot ${id}\n`);

    // check: a damaged chunk of the awkward file, named escaped.
    const packs = await packfiles(repo);
    const chunkPack = packs.at(-1)!; // the 30 KiB file's chunk is the largest blob
    const bytes = await fsp.readFile(chunkPack.file);
    bytes[100]! ^= 0xff;
    await fsp.writeFile(chunkPack.file, bytes);
    const chk = await expectRun(EXIT.ERROR, ["at", repo, "check"]);
    expect(chk.stdout, describeRun(chk)).not.toMatch(TERMINAL_CONTROL);
    expect(chk.stdout, describeRun(chk)).toContain(`error: snapshot ${id}: /ok\\033[32m.txt: `);
    const chkJson = parseJson<{ problems: { path?: string }[] }>(await expectRun(EXIT.ERROR, ["at", repo, "check", "--json"]));
    expect(chkJson.problems.map((p) => p.path).filter(Boolean)).toContain(`/${OK_NAME}`);
    const damaged = await expectRun(EXIT.PARTIAL, ["at", repo, "restore", "--to", fresh("names-damaged"), id]);
    expect(damaged.stderr, describeRun(damaged)).not.toMatch(TERMINAL_CONTROL);
    expect(damaged.stderr, describeRun(damaged)).toContain("coffer: cannot restore /ok\\033[32m.txt: ");
    // Nothing stored was lost: the snapshot is still listed.
    expect((await snapshotIds(repo)).map((s) => s.slice(0, 8))).toEqual([id]);
  });

  it("commander's usage errors escape what was typed", async () => {
    const r = await expectRun(EXIT.USAGE, ["ls", `--bogus${ESC}[31m`]);
    expect(r.stderr, describeRun(r)).not.toMatch(TERMINAL_CONTROL);
    expect(r.stderr).toContain("--bogus\\033[31m");
  });
});

// --------------------------------------------------------------------------

describe("2. create refuses a location that holds anything but an empty directory", () => {
  it("a directory with another repository's packfiles and states (no CONFIG): exit 1, not empty, nothing changed", async () => {
    const other = fresh("other-repo");
    await createRepo(other);
    const src = fresh("other-src");
    await fsp.mkdir(src);
    await fsp.writeFile(path.join(src, "a.txt"), "precious\n");
    await backupId(other, src);
    const target = fresh("leftovers");
    await fsp.mkdir(target);
    for (const d of ["packfiles", "states"]) await fsp.cp(path.join(other, d), path.join(target, d), { recursive: true });
    const before = await fingerprint(target);
    const r = await expectRun(EXIT.ERROR, ["at", target, "create", ...FAST_KDF]);
    expect(r.stderr, describeRun(r)).toMatch(new RegExp(`^coffer: cannot create a repository at ${target}: the directory is not empty \\(it holds packfiles/ .*states/ .*\\)`));
    expect(r.stdout).toBe("");
    expect(await fingerprint(target)).toEqual(before);
  });

  it("a directory with someone's files: refused, untouched; a repository: REPOSITORY_EXISTS, untouched", async () => {
    const target = fresh("files");
    await fsp.mkdir(target);
    await fsp.writeFile(path.join(target, "notes.txt"), "mine\n");
    const before = await fingerprint(target);
    const r = await expectRun(EXIT.ERROR, ["at", target, "create", ...FAST_KDF]);
    expect(r.stderr, describeRun(r)).toContain(`cannot create a repository at ${target}: the directory is not empty (it holds notes.txt)`);
    expect(await fingerprint(target)).toEqual(before);

    const repo = fresh("existing");
    await createRepo(repo);
    const snap = await fingerprint(repo);
    const again = await expectRun(EXIT.ERROR, ["at", repo, "create", ...FAST_KDF]);
    expect(again.stderr).toBe(`coffer: a repository already exists at ${repo}\n`);
    expect(await fingerprint(repo)).toEqual(snap);
  });

  it("an empty directory, and one holding only the empty directories a failed create left, are accepted", async () => {
    const empty = fresh("empty");
    await fsp.mkdir(empty);
    await createRepo(empty);
    const left = fresh("half-created");
    for (const d of ["tmp", "packfiles", "states", "locks"]) await fsp.mkdir(path.join(left, d), { recursive: true });
    await createRepo(left);
    expect(existsSync(path.join(left, "CONFIG"))).toBe(true);
  });

  it("ptar: a non-empty file that is not an archive is refused (not empty), an archive is REPOSITORY_EXISTS; both untouched", async () => {
    const file = `${fresh("notes")}.ptar`;
    await fsp.writeFile(file, "not an archive\n");
    const before = await fingerprint(file);
    const r = await expectRun(EXIT.ERROR, ["at", file, "create", ...FAST_KDF]);
    expect(r.stderr, describeRun(r)).toContain(`cannot create a repository at ${file}: the file exists and is not empty`);
    expect(await fingerprint(file)).toEqual(before);

    const archive = `${fresh("archive")}.ptar`;
    await createRepo(archive);
    const snap = await fingerprint(archive);
    const again = await expectRun(EXIT.ERROR, ["at", archive, "create", ...FAST_KDF]);
    expect(again.stderr).toBe(`coffer: a repository already exists at ${archive}\n`);
    expect(await fingerprint(archive)).toEqual(snap);
    expect((await fsp.readdir(path.dirname(archive))).filter((n) => n.endsWith(".tmp"))).toEqual([]);
  });
});

// --------------------------------------------------------------------------

describe("3. an unreadable lock", () => {
  const garbage = Buffer.from("this is not a lock: \x00\x01\x02 garbled bytes".repeat(3), "latin1");

  async function repoWithGarbledLock(): Promise<{ repo: string; src: string; lock: string; name: string }> {
    const repo = fresh("lock-repo");
    await createRepo(repo);
    const src = fresh("lock-src");
    await fsp.mkdir(src);
    await fsp.writeFile(path.join(src, "a.txt"), "locked out?\n");
    const name = "ab".repeat(32);
    const lock = path.join(repo, "locks", name);
    await fsp.writeFile(lock, garbage);
    return { repo, src, lock, name };
  }

  it("fresh: backup exits 11 naming the lock's file; the lock and the repository are untouched", async () => {
    const { repo, src, lock } = await repoWithGarbledLock();
    const r = await expectRun(EXIT.LOCKED, ["at", repo, "backup", src]);
    expect(r.stderr, describeRun(r)).toContain(`coffer: repository is locked: an unreadable lock ${lock} (lock blob abababababababab: authentication failed`);
    expect(r.stderr, describeRun(r)).toContain("ignored and removed once 5 minutes old");
    expect(await fsp.readFile(lock)).toEqual(garbage);
    expect(await fsp.readdir(path.join(repo, "locks"))).toEqual([path.basename(lock)]);
    expect(await snapshotIds(repo)).toEqual([]);
  });

  it("older than the stale-lock age (by its mtime): backup proceeds with a warning and removes it", async () => {
    const { repo, src, lock } = await repoWithGarbledLock();
    const old = new Date(Date.now() - 10 * 60_000);
    await fsp.utimes(lock, old, old);
    const r = await expectRun(EXIT.OK, ["at", repo, "backup", src]);
    expect(r.stderr, describeRun(r)).toContain(`coffer: warning: removed an unreadable lock ${lock} (lock blob abababababababab: authentication failed`);
    expect(r.stderr, describeRun(r)).toContain(`last modified ${old.toISOString()}`);
    expect(await fsp.readdir(path.join(repo, "locks"))).toEqual([]);
    expect((await snapshotIds(repo)).map((s) => s.slice(0, 8))).toEqual([r.stdout.trim()]);
  });
});

// --------------------------------------------------------------------------

describe("4 and 5. restore targets", () => {
  let repo = "";
  let src = "";
  let snap = "";

  beforeAll(async () => {
    repo = fresh("restore-repo");
    await createRepo(repo);
    src = fresh("restore-src");
    await fsp.mkdir(path.join(src, "sub"), { recursive: true });
    await fsp.writeFile(path.join(src, "a.txt"), "alpha\n");
    await fsp.writeFile(path.join(src, "sub", "b.bin"), seededBytes("restore-b", 50 * KiB));
    snap = (await backupId(repo, src)).slice(0, 8);
  });

  for (const proto of ["tar", "tar+gz"]) {
    it(`${proto}:FILE that exists: refused without --force (exit 1, named, unchanged); replaced with --force`, async () => {
      const dir = fresh(`${proto}-target`);
      await fsp.mkdir(dir);
      const file = path.join(dir, "out.tar");
      await fsp.writeFile(file, "my precious file\n");
      const r = await expectRun(EXIT.ERROR, ["at", repo, "restore", "--to", `${proto}:${file}`, snap]);
      expect(r.stderr, describeRun(r)).toBe(`coffer: ${file} exists: not replaced (give --force to replace it)\n`);
      expect(await fsp.readFile(file, "utf8")).toBe("my precious file\n");
      expect(await fsp.readdir(dir)).toEqual(["out.tar"]);

      await expectRun(EXIT.OK, ["at", repo, "restore", "--force", "--to", `${proto}:${file}`, snap]);
      expect(await fsp.readdir(dir), "no temporary file left").toEqual(["out.tar"]);
      const x = fresh("extracted");
      await fsp.mkdir(x);
      execFileSync("tar", [proto === "tar" ? "-xf" : "-xzf", file, "-C", x]);
      expect(await compareTrees(src, x, { rootMeta: false })).toEqual([]);
    });
  }

  it("SNAP:PATH that does not exist: PATH_NOT_FOUND (exit 1) before DIR or tar:FILE is created", async () => {
    const dir = fresh("never-made");
    const r = await expectRun(EXIT.ERROR, ["at", repo, "restore", "--to", dir, `${snap}:/nope`]);
    expect(r.stderr, describeRun(r)).toBe(`coffer: /nope: no such file or directory in snapshot ${snap}\n`);
    expect(existsSync(dir), `${dir} was created`).toBe(false);

    const parent = fresh("tar-parent");
    await fsp.mkdir(parent);
    const t = await expectRun(EXIT.ERROR, ["at", repo, "restore", "--to", `tar:${path.join(parent, "x.tar")}`, `${snap}:/sub/nope`]);
    expect(t.stderr, describeRun(t)).toBe(`coffer: /sub/nope: no such file or directory in snapshot ${snap}\n`);
    expect(await fsp.readdir(parent)).toEqual([]);
  });
});

// --------------------------------------------------------------------------

/** Mounts a tmpfs of `size` at `dir`; the reason it cannot, or null. */
function mountTmpfs(dir: string, size: string): string | null {
  try {
    execFileSync("mount", ["-t", "tmpfs", "-o", `size=${size}`, "tmpfs", dir], { stdio: "pipe" });
    return null;
  } catch (e) {
    return `mount -t tmpfs failed: ${String((e as { stderr?: Buffer }).stderr ?? e).trim()}`;
  }
}

describe("6. a full repository (a 2 MiB tmpfs)", () => {
  it("backup stops with one `repository full` error naming the repository (exit 1); check passes; with room the next backup works", async (t) => {
    const mnt = fresh("tmpfs");
    await fsp.mkdir(mnt);
    const why = mountTmpfs(mnt, "2m");
    // Only where the test process may not mount (no CAP_SYS_ADMIN); test/integration/repository-write-errors.test.ts covers the rest.
    if (why !== null) skipOrFail(t, why);
    try {
      const repo = path.join(mnt, "repo");
      await createRepo(repo);
      const src = fresh("big-src");
      await fsp.mkdir(src);
      for (let i = 0; i < 40; i++) await fsp.writeFile(path.join(src, `f${String(i).padStart(2, "0")}`), seededBytes(`big-${i}`, 200 * KiB));
      const r = await expectRun(EXIT.ERROR, ["at", repo, "backup", src]);
      expect(r.stderr, describeRun(r)).toBe(`coffer: repository full: cannot write to ${repo} (ENOSPC: no space left on device)\n`);
      expect(r.stdout).toBe("");

      const chk = await expectRun(EXIT.OK, ["at", repo, "check"]);
      expect(chk.stdout, describeRun(chk)).toMatch(/: no problems/);
      expect(await snapshotIds(repo)).toEqual([]);
      expect(await fsp.readdir(path.join(repo, "tmp")), "no temporary file left").toEqual([]);

      execFileSync("mount", ["-o", "remount,size=32m", mnt]);
      const id = await backupId(repo, src);
      expect(await snapshotIds(repo)).toEqual([id]);
      await expectRun(EXIT.OK, ["at", repo, "check"]);
      const to = fresh("big-restore");
      await expectRun(EXIT.OK, ["at", repo, "restore", "--to", to, id.slice(0, 8)]);
      expect(await compareTrees(src, to)).toEqual([]);
    } finally {
      execFileSync("umount", [mnt]);
    }
  });
});

// --------------------------------------------------------------------------

describe("7. coffer without a command", () => {
  it("prints the help on stderr and exits 2 (also `coffer pkg`); `coffer --help` is still exit 0 on stdout", async () => {
    const r = await expectRun(EXIT.USAGE, []);
    expect(r.stdout).toBe("");
    expect(r.stderr).toMatch(/^Usage: coffer \[at LOCATION\] <command> \[options\]/);
    expect(r.stderr).toContain("Exit codes:");
    const pkg = await expectRun(EXIT.USAGE, ["pkg"]);
    expect(pkg.stdout).toBe("");
    expect(pkg.stderr).toMatch(/^Usage: coffer pkg/);
    const help = await expectRun(EXIT.OK, ["--help"]);
    expect(help.stdout).toMatch(/^Usage: coffer/);
  });
});

// --------------------------------------------------------------------------

describe("8. pkg create keeps every path inside the manifest's directory", () => {
  async function pkgDir(manifestTail: string): Promise<{ dir: string; out: string; manifest: string }> {
    const dir = fresh("pkg");
    const out = fresh("pkg-out");
    await fsp.mkdir(dir);
    await fsp.mkdir(out);
    await fsp.writeFile(path.join(dir, "imp.js"), "// importer\n");
    await fsp.symlink("/etc", path.join(dir, "etcdir"));
    await fsp.symlink("/usr/bin", path.join(dir, "bindir"));
    const manifest = path.join(dir, "manifest.yaml");
    await fsp.writeFile(manifest, `name: escapee\nversion: 1.0.0\napi_version: 1.0.0\nconnectors:\n  - type: importer\n    protocols: [escapee]\n${manifestTail}`);
    return { dir, out, manifest };
  }

  it("extra_files through a symlinked directory (etcdir -> /etc): refused naming the path, no package written", async () => {
    const { out, manifest } = await pkgDir("    executable: imp.js\n    extra_files: [etcdir/passwd]\n");
    const r = await expectRun(EXIT.USAGE, ["pkg", "create", manifest, "--out", out]);
    expect(r.stderr, describeRun(r)).toContain(`coffer: ${manifest}: connectors[0].extra_files[0]: etcdir/passwd resolves to /etc/passwd, outside the manifest's directory`);
    expect(await fsp.readdir(out)).toEqual([]);
  });

  it("the executable through a symlinked directory, and a directory taken whole through one: refused too", async () => {
    const exe = await pkgDir("    executable: bindir/true\n");
    const r = await expectRun(EXIT.USAGE, ["pkg", "create", exe.manifest, "--out", exe.out]);
    expect(r.stderr, describeRun(r)).toContain("connectors[0].executable: bindir/true resolves to ");
    expect(r.stderr).toContain("outside the manifest's directory");
    expect(await fsp.readdir(exe.out)).toEqual([]);

    const whole = await pkgDir("    executable: imp.js\n    extra_files: [etcdir/ssl]\n");
    if (existsSync("/etc/ssl")) {
      const w = await expectRun(EXIT.USAGE, ["pkg", "create", whole.manifest, "--out", whole.out]);
      expect(w.stderr, describeRun(w)).toContain("connectors[0].extra_files[0]: etcdir/ssl resolves to /etc/ssl, outside");
      expect(await fsp.readdir(whole.out)).toEqual([]);
    }
  });

  it("paths inside the directory still work, a real subdirectory included", async () => {
    const { dir, out, manifest } = await pkgDir("    executable: imp.js\n    extra_files: [lib]\n");
    await fsp.mkdir(path.join(dir, "lib"));
    await fsp.writeFile(path.join(dir, "lib", "x.js"), "// x\n");
    const r = await expectRun(EXIT.OK, ["pkg", "create", manifest, "--out", out, "--json"]);
    expect(parseJson<{ files: number }>(r).files).toBe(2);
  });
});

// --------------------------------------------------------------------------

describe("9. a packfile swapped for another", () => {
  it("cat and restore fail authentication naming the packfile and blob; check names it; the other snapshot is intact", async () => {
    const repo = fresh("swap-repo");
    await createRepo(repo);
    const s1 = fresh("swap-a");
    const s2 = fresh("swap-b");
    await fsp.mkdir(s1);
    await fsp.mkdir(s2);
    await fsp.writeFile(path.join(s1, "f"), seededBytes("swap-a", 20 * KiB));
    await fsp.writeFile(path.join(s2, "g"), seededBytes("swap-b", 200 * KiB));
    const a = (await backupId(repo, s1)).slice(0, 8);
    const packsAfterA = new Set((await packfiles(repo)).map((p) => p.id));
    const b = (await backupId(repo, s2)).slice(0, 8);
    // Each backup wrote its data packfile (chunks and trees) and the one of its header: A's data pack is the larger of A's.
    const all = await packfiles(repo);
    const packA = all.filter((p) => packsAfterA.has(p.id)).at(-1)!;
    const packB = all.filter((p) => !packsAfterA.has(p.id)).at(-1)!;
    expect(packB.size).toBeGreaterThan(packA.size);
    await fsp.copyFile(packB.file, packA.file);

    const cat = await expectRun(EXIT.ERROR, ["at", repo, "cat", `${a}:/f`]);
    expect(cat.stdout).toBe("");
    expect(cat.stderr, describeRun(cat)).toMatch(new RegExp(`^coffer: packfile ${packA.id}: (tree|chunk) blob [0-9a-f]{16}: authentication failed`));
    const rr = await run(["at", repo, "restore", "--to", fresh("swap-restore"), a]);
    expect([EXIT.ERROR, EXIT.PARTIAL], describeRun(rr)).toContain(rr.exitCode);
    expect(rr.stderr, describeRun(rr)).toContain(`packfile ${packA.id}: `);
    expect(rr.stderr).toContain("authentication failed");

    const chk = await expectRun(EXIT.ERROR, ["at", repo, "check"]);
    expect(chk.stdout, describeRun(chk)).toContain(`error: packfile ${packA.id}: `);
    expect(chk.stdout).toContain(`in packfile ${packA.id.slice(0, 12)}: `);
    expect(chk.stdout).toContain("authentication failed");

    // Nothing else was lost: B restores whole.
    const to = fresh("swap-b-restore");
    await expectRun(EXIT.OK, ["at", repo, "restore", "--to", to, b]);
    expect(await compareTrees(s2, to)).toEqual([]);
  });
});
