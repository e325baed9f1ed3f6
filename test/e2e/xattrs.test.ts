/**
 * Extended attributes end to end through the built CLI, on a machine
 * without the attr package (getfattr/setfattr): user attributes (a binary
 * value, an empty one, a name that is not UTF-8) round-trip through backup
 * and restore; as root also a file capability (checked with getcap) and
 * POSIX access and default ACLs (compared with getfacl). A restore onto a
 * file system that refuses attributes (ramfs, as root) names what could not
 * be set and exits 3.
 */
import { execFileSync } from "node:child_process";
import { promises as fsp } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { xattrSyscalls } from "../../src/connectors/fs/xattr-native.js";
import { type CofferResult, type Env, EXIT, expectExit, expectNoStackTrace, FAST_KDF } from "../helpers/cli.js";
import { cofferInProcess } from "../helpers/in-process.js";
import { skipOrFail } from "../helpers/prerequisites.js";
import { compareTrees, readTreeXattrs, setXattr } from "../helpers/tree.js";

const PASS = "xattrs-e2e";
const isRoot = process.getuid?.() === 0;
let base: string;
let n = 0;

beforeAll(async () => {
  base = await fsp.mkdtemp(path.join(tmpdir(), "coffer-e2e-xattrs-"));
  await fsp.mkdir(path.join(base, "tmp"));
});
afterAll(async () => {
  await fsp.rm(base, { recursive: true, force: true });
});

const fresh = (what: string) => path.join(base, `${what}-${++n}`);
const env = (): Env => ({ HOME: base, TMPDIR: path.join(base, "tmp"), COFFER_PASSPHRASE: PASS });

async function run(args: string[], code: number = EXIT.OK): Promise<CofferResult> {
  const r = await cofferInProcess(args, { env: env(), cwd: base });
  expectNoStackTrace(r);
  return expectExit(r, code);
}

/** A repository holding one snapshot of `src`; returns the repository. */
async function backedUp(src: string): Promise<string> {
  const repo = fresh("repo");
  await run(["at", repo, "create", ...FAST_KDF]);
  const b = await run(["at", repo, "backup", src]);
  expect(b.stderr).not.toMatch(/warning/);
  return repo;
}

const tool = (cmd: string, ...args: string[]): string => execFileSync(cmd, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
const has = (cmd: string): boolean => {
  try {
    execFileSync("sh", ["-c", `command -v ${cmd}`], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
};

/** `user.` followed by bytes that are not UTF-8. */
const RAW_NAME = Buffer.concat([Buffer.from("user.lat"), Buffer.from([0xe9, 0xff, 0x80])]);
const BINARY = Buffer.from([0x00, 0xff, 0x00, 0xfe, 0x0a, 0x0d, 0x3d, 0x5c, 0x22]);

/** A tree with user attributes only (any user may set them on files and directories they own). */
async function userTree(): Promise<string> {
  const src = fresh("src");
  await fsp.mkdir(path.join(src, "dir"), { recursive: true });
  await fsp.writeFile(path.join(src, "dir", "file.bin"), "content\n");
  await fsp.writeFile(path.join(src, "read-only"), "ro\n");
  setXattr(path.join(src, "dir", "file.bin"), "user.binary", BINARY);
  setXattr(path.join(src, "dir", "file.bin"), "user.empty", null);
  setXattr(path.join(src, "dir", "file.bin"), RAW_NAME, "raw name");
  setXattr(path.join(src, "dir"), "user.on-a-dir", Buffer.from([1, 2, 3, 0]));
  setXattr(path.join(src, "read-only"), "user.locked", "yes");
  await fsp.chmod(path.join(src, "read-only"), 0o444); // the owner may not set user.* on it any more
  return src;
}

describe("extended attributes", () => {
  it("user attributes (binary and empty values, a name that is not UTF-8) round-trip through backup and restore", async () => {
    const src = await userTree();
    const repo = await backedUp(src);
    const out = fresh("out");
    await run(["at", repo, "restore", "-q", "--to", out]);
    const sys = xattrSyscalls();
    const file = Buffer.from(path.join(out, "dir", "file.bin"));
    expect(sys.list(file).map((b) => b.toString("hex")).sort()).toEqual([RAW_NAME, Buffer.from("user.binary"), Buffer.from("user.empty")].map((b) => b.toString("hex")).sort());
    expect(sys.get(file, RAW_NAME).toString()).toBe("raw name");
    expect(sys.get(file, Buffer.from("user.binary")).equals(BINARY)).toBe(true);
    expect(sys.get(file, Buffer.from("user.empty")).length).toBe(0);
    expect(await compareTrees(src, out)).toEqual([]);
    expect((await readTreeXattrs(out)).size).toBe(3);
    // --no-xattr stores none.
    const bare = fresh("repo");
    await run(["at", bare, "create", ...FAST_KDF]);
    await run(["at", bare, "backup", "--no-xattr", src]);
    const out2 = fresh("out");
    await run(["at", bare, "restore", "-q", "--to", out2]);
    expect((await readTreeXattrs(out2)).size).toBe(0);
  });

  it("as root: a file capability and POSIX access and default ACLs come back as getcap and getfacl show them", async (t) => {
    if (!isRoot) skipOrFail(t, "needs root");
    expect(has("setfacl") && has("getfacl"), "setfacl/getfacl (Debian package acl) are needed").toBe(true);
    expect(has("getcap"), "getcap (Debian package libcap2-bin) is needed").toBe(true);
    const src = fresh("src");
    await fsp.mkdir(path.join(src, "shared", "sub"), { recursive: true });
    await fsp.writeFile(path.join(src, "shared", "before"), "made before the default ACL\n");
    await fsp.writeFile(path.join(src, "ping"), "#!/bin/sh\n", { mode: 0o755 });
    await fsp.writeFile(path.join(src, "acl.txt"), "acl\n", { mode: 0o640 });
    await fsp.writeFile(path.join(src, "masked"), "mask\n", { mode: 0o600 });
    await fsp.chown(path.join(src, "ping"), 0, 0);
    // vfs_cap_data revision 2, effective: cap_net_raw (13) permitted.
    const cap = Buffer.alloc(20);
    cap.writeUInt32LE(0x02000001, 0);
    cap.writeUInt32LE(1 << 13, 4);
    setXattr(path.join(src, "ping"), "security.capability", cap);
    tool("setfacl", "-m", "u:nobody:r", path.join(src, "acl.txt"));
    tool("setfacl", "-m", "u:nobody:rw,m::r", path.join(src, "masked")); // a mask narrower than the entry
    tool("setfacl", "-d", "-m", "u:nobody:rx", path.join(src, "shared"));
    tool("setfacl", "-m", "u:nobody:rwx", path.join(src, "shared"));
    await fsp.writeFile(path.join(src, "shared", "after"), "inherits the default ACL\n");
    await fsp.mkdir(path.join(src, "shared", "after-dir"));
    await fsp.chmod(path.join(src, "shared"), 0o2770); // setgid: kept with the ACL

    const repo = await backedUp(src);
    const out = fresh("out");
    await run(["at", repo, "restore", "-q", "--to", out]);

    // getfacl of every entry, in one order, named relative to the root.
    const acls = async (root: string) => {
      const rels = (await fsp.readdir(root, { recursive: true })).sort();
      return execFileSync("getfacl", ["--numeric", "--", ".", ...rels], { cwd: root, encoding: "utf8" });
    };
    const want = await acls(src);
    expect(want).toMatch(/user:65534:r--/);
    expect(want).toMatch(/default:user:65534:r-x/);
    expect(want).toMatch(/# file: shared\/before\n# owner: 0\n# group: 0\nuser::rw-\ngroup::r--\nother::r--/);
    expect(await acls(out)).toBe(want);
    expect(tool("getcap", path.join(out, "ping")).trim()).toBe(`${path.join(out, "ping")} cap_net_raw=ep`);
    expect(xattrSyscalls().get(Buffer.from(path.join(out, "ping")), Buffer.from("security.capability")).equals(cap)).toBe(true);
    expect(await compareTrees(src, out)).toEqual([]);
  });

  it("a restore onto a file system that refuses extended attributes names each one not set and exits 3", async (ctx) => {
    if (!isRoot) skipOrFail(ctx, "needs root");
    const mnt = fresh("ramfs");
    await fsp.mkdir(mnt);
    try {
      execFileSync("mount", ["-t", "ramfs", "none", mnt], { stdio: "ignore" });
    } catch {
      skipOrFail(ctx, "cannot mount a ramfs here (the unit test covers this through the binding's seam)");
    }
    try {
      const src = await userTree();
      const repo = await backedUp(src);
      const r = await run(["at", repo, "restore", "--to", mnt], EXIT.PARTIAL);
      expect(r.stderr).toMatch(/cannot restore \/dir\/file\.bin: extended attribute user\.binary not set: EOPNOTSUPP|cannot restore \/dir\/file\.bin: extended attribute user\.binary not set: ENOTSUP/);
      expect(r.stderr).toContain("extended attribute user.lat\\351\\377\\200 not set");
      expect(r.stderr).toMatch(/cannot restore \/dir: extended attribute user\.on-a-dir not set: E\w*NOTSUP/);
      expect(r.stderr).toMatch(/cannot restore \/read-only: extended attribute user\.locked not set/);
      expect(r.stderr).toMatch(/; 3 errors/);
      // The rest of each entry is restored all the same.
      expect(await fsp.readFile(path.join(mnt, "dir", "file.bin"), "utf8")).toBe("content\n");
      expect((await fsp.stat(path.join(mnt, "read-only"))).mode & 0o7777).toBe(0o444);
    } finally {
      execFileSync("umount", [mnt]);
    }
  });
});
