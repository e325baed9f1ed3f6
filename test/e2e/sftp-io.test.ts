/**
 * The BUILT CLI (run `npm run build` first) backing up a tree on a real
 * OpenSSH server (test/helpers/sshd.ts) and restoring it to another
 * directory there: the restored tree equals the original (content, modes,
 * whole-second mtimes, owners, symlinks); a no-change backup reads no file
 * whose size and mtime match the parent, except one whose mtime is in the
 * second the parent started or later; and errors name the server and the
 * path, with no stack trace: a missing source, and files the server denies
 * (a second server whose internal-sftp denies every open, `-P open`).
 */
import { promises as fsp } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { builtCliExists, coffer, type Env, EXIT, expectExit, expectNoStackTrace, FAST_KDF } from "../helpers/cli.js";
import { lacks } from "../helpers/prerequisites.js";
import { hasSshd, type Sshd, startSshd } from "../helpers/sshd.js";
import { compareTrees, writeSeededFile } from "../helpers/tree.js";

const PASS = "correct horse battery staple";
const skip = lacks(hasSshd(), "sshd, ssh-keygen and setpriv (openssh-server, openssh-client, util-linux)") || lacks(builtCliExists(), "the built CLI (npm run build)");

let sshd: Sshd;
/** A server whose internal-sftp refuses every open. */
let denying: Sshd;
let base = "";
let home = "";
let counter = 0;

function fresh(name: string): string {
  return path.join(sshd.dir, `${String(++counter).padStart(3, "0")}-${name}`);
}

/** The sftp:// location of the absolute `dir` on `server`. */
function at(dir: string, server = sshd): string {
  return `sftp://${server.user}@127.0.0.1:${server.port}/${dir}`;
}

/** In run()'s arguments: `-o identity_file=` the server's key. */
const KEY = "<key>";

async function run(args: string[], code: number = EXIT.OK, server = sshd) {
  const env: Env = { HOME: home, TMPDIR: path.join(base, "tmp"), COFFER_PASSPHRASE: PASS };
  const r = await coffer(args.flatMap((a) => (a === KEY ? ["-o", `identity_file=${server.identityFile}`] : [a])), { env, cwd: base });
  expectNoStackTrace(r);
  return expectExit(r, code);
}

async function newRepo(): Promise<string> {
  const repo = path.join(base, `repo-${++counter}`);
  await run(["at", repo, "create", ...FAST_KDF]);
  return repo;
}

/** A whole second in the past, distinct per entry. */
let tick = 1_700_000_000;
const past = () => tick++;

/** Files, directories and symlinks with modes, owners and whole-second mtimes (all SFTP keeps), set deepest first. */
async function makeTree(dir: string): Promise<void> {
  await fsp.mkdir(path.join(dir, "sub", "deeper"), { recursive: true });
  await fsp.mkdir(path.join(dir, "empty"));
  await fsp.writeFile(path.join(dir, "small.txt"), "hello over ssh\n");
  await writeSeededFile(path.join(dir, "big.bin"), "sftp-big", 9 * 1024 * 1024 + 5);
  for (let i = 0; i < 12; i++) await writeSeededFile(path.join(dir, i % 2 ? "sub" : "sub/deeper", `f${i}.bin`), `sftp-${i}`, 40_000 + i);
  await fsp.writeFile(path.join(dir, "sub", "owned.txt"), "someone else's\n");
  await fsp.chown(path.join(dir, "sub", "owned.txt"), 1234, 4321);
  await fsp.writeFile(path.join(dir, "setuid"), "#!/bin/sh\n");
  await fsp.chmod(path.join(dir, "setuid"), 0o4750);
  await fsp.chmod(path.join(dir, "sub"), 0o750);
  await fsp.symlink("sub/owned.txt", path.join(dir, "link"));
  await fsp.symlink("nowhere/at/all", path.join(dir, "dangling"));
  const walk = async (p: string): Promise<void> => {
    const st = await fsp.lstat(p);
    if (st.isDirectory()) for (const n of await fsp.readdir(p)) await walk(path.join(p, n));
    const t = past();
    await fsp.lutimes(p, t, t);
  };
  await walk(dir);
}

/** Rewrites a file with other bytes of the same size, then gives it mtime `t` (seconds). */
async function rewrite(file: string, t: number): Promise<void> {
  const old = await fsp.readFile(file);
  await fsp.writeFile(file, Buffer.from(old.map((b) => b ^ 0xff)));
  await fsp.utimes(file, t, t);
}

describe.skipIf(skip)("sftp:// sources and targets", () => {
  beforeAll(async () => {
    sshd = await startSshd();
    denying = await startSshd({ sftpFlags: ["-P", "open"] });
    base = await fsp.mkdtemp(path.join(tmpdir(), "coffer-e2e-sftp-io-"));
    home = path.join(base, "home");
    await fsp.mkdir(path.join(home, ".ssh"), { recursive: true });
    await fsp.mkdir(path.join(base, "tmp"));
    await fsp.writeFile(path.join(home, ".ssh", "known_hosts"), (await fsp.readFile(sshd.knownHosts, "utf8")) + (await fsp.readFile(denying.knownHosts, "utf8")));
  });
  afterAll(async () => {
    await sshd?.stop();
    await denying?.stop();
    if (base) await fsp.rm(base, { recursive: true, force: true });
  });

  it("backs up a remote tree and restores it to another remote directory, equal to the original", async () => {
    const src = fresh("src");
    await makeTree(src);
    const repo = await newRepo();
    await run(["at", repo, "backup", KEY, "-o", "connections=2", at(src)]);
    const to = fresh("restored");
    await run(["at", repo, "restore", KEY, "--to", at(to)]);
    expect(await compareTrees(src, to)).toEqual([]);
    expect((await fsp.readdir(to)).filter((n) => n.endsWith(".tmp"))).toEqual([]);
  });

  it("a no-change backup reads no file whose size and mtime match the parent, but one written in the parent's second or later", async () => {
    const src = fresh("unchanged");
    await makeTree(src);
    // An mtime after the first backup's start (as a file written in its last second would have).
    const racy = path.join(src, "small.txt");
    const later = Math.floor(Date.now() / 1000) + 3600;
    await fsp.utimes(racy, later, later);
    const repo = await newRepo();
    await run(["at", repo, "backup", KEY, at(src)]);
    // Same size, same (old) mtime, other bytes: a backup that reads the file stores the new bytes.
    const unread = path.join(src, "sub", "deeper", "f0.bin");
    const before = await fsp.readFile(unread);
    await rewrite(unread, Math.floor((await fsp.stat(unread)).mtimeMs / 1000));
    // Same size, same mtime, other bytes, but the parent may have read it before it was written again in that second: read.
    await rewrite(racy, later);
    const racyNow = await fsp.readFile(racy);
    await run(["at", repo, "backup", KEY, at(src)]);
    const to = path.join(base, `restored-${++counter}`);
    await run(["at", repo, "restore", "--to", to]);
    expect((await fsp.readFile(path.join(to, "sub", "deeper", "f0.bin"))).equals(before)).toBe(true);
    expect((await fsp.readFile(path.join(to, "small.txt"))).equals(racyNow)).toBe(true);
  });

  it("a missing source is an error naming the server and the path, exit 1", async () => {
    const missing = path.join(sshd.dir, "no-such-dir");
    const repo = await newRepo();
    const r = await run(["at", repo, "backup", KEY, at(missing)], EXIT.ERROR);
    expect(r.stderr).toContain(`${at(missing)}: no such file or directory`);
  });

  it("files the server refuses: each named with the server and its path, exit 3; a restore there fails naming the path", async () => {
    const src = fresh("denied");
    await fsp.mkdir(src);
    await fsp.writeFile(path.join(src, "secret.txt"), "not for you\n");
    const repo = await newRepo();
    const r = await run(["at", repo, "backup", KEY, at(src, denying)], EXIT.PARTIAL, denying);
    expect(r.stderr).toContain(`${at(path.join(src, "secret.txt"), denying)}: permission denied`);
    const local = fresh("local");
    await fsp.mkdir(local);
    await fsp.writeFile(path.join(local, "a.txt"), "restored nowhere\n");
    await run(["at", repo, "backup", local]);
    const to = fresh("refused");
    const out = await run(["at", repo, "restore", KEY, "--to", at(to, denying)], EXIT.PARTIAL, denying);
    expect(out.stderr).toContain(at(to, denying));
    expect(out.stderr).toContain("permission denied");
  });
});
