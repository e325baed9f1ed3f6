/**
 * The libc binding (xattr-native.ts) on real files, and the fs connectors'
 * handling of attribute failures through the binding's seam: a file system
 * without xattr support is one warning per import, another failure a
 * warning naming the entry, and on restore every attribute not set fails
 * its entry (directories' through finish()).
 */
import { mkdir, mkdtemp, rm, stat, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { FsExporter } from "../../src/connectors/fs/exporter.js";
import { FsImporter } from "../../src/connectors/fs/importer.js";
import { EOPNOTSUPP, setXattrSyscalls, xattrError, XattrError, type XattrSyscalls, xattrSyscalls } from "../../src/connectors/fs/xattr-native.js";
import type { ImportRecord } from "../../src/connectors/records.js";

const isRoot = process.getuid?.() === 0;
let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "coffer-xattr-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});
afterEach(() => {
  setXattrSyscalls(undefined);
});

const b = (s: string) => Buffer.from(s);
const RAW = Buffer.concat([b("user.caf"), Buffer.from([0xe9, 0xff])]);

async function collect(it: AsyncIterable<ImportRecord>): Promise<ImportRecord[]> {
  const out: ImportRecord[] = [];
  for await (const r of it) out.push(r);
  return out;
}

describe("libc binding", () => {
  it("sets, lists, reads and removes attributes with byte names and values, on paths that are not UTF-8", async () => {
    const sys = xattrSyscalls();
    const file = Buffer.concat([b(join(dir, "lat")), Buffer.from([0xe9])]);
    await writeFile(file, "x");
    expect(sys.list(file)).toEqual([]);
    const big = Buffer.alloc(3000, 0xab);
    sys.set(file, b("user.bin"), Buffer.from([0, 0xff, 0, 0x0a]));
    sys.set(file, RAW, b("raw"));
    sys.set(file, b("user.empty"), Buffer.alloc(0));
    sys.set(file, b("user.big"), big);
    expect(sys.list(file).map((n) => n.toString("hex")).sort()).toEqual([b("user.bin"), RAW, b("user.empty"), b("user.big")].map((n) => n.toString("hex")).sort());
    expect([...sys.get(file, b("user.bin"))]).toEqual([0, 0xff, 0, 0x0a]);
    expect(sys.get(file, RAW).toString()).toBe("raw");
    expect(sys.get(file, b("user.empty")).length).toBe(0);
    expect(sys.get(file, b("user.big")).equals(big)).toBe(true);
    sys.set(file, b("user.bin"), b("replaced"));
    expect(sys.get(file, b("user.bin")).toString()).toBe("replaced");
    sys.remove(file, RAW);
    expect(sys.list(file).some((n) => n.equals(RAW))).toBe(false);
  });

  it("reads lists and values larger than its first buffer (1 KiB: ERANGE, then the size, then again)", async () => {
    const sys = xattrSyscalls();
    // ext4 keeps all of an inode's attributes in one 4 KiB block: a long list of empty values, a large value apart.
    const many = b(join(dir, "many"));
    await writeFile(many, "");
    const names = Array.from({ length: 45 }, (_, i) => `user.attribute-number-${String(i).padStart(3, "0")}`);
    for (const n of names) sys.set(many, b(n), Buffer.alloc(0));
    expect(names.join("\0").length).toBeGreaterThan(1024);
    expect(sys.list(many).map((n) => n.toString()).sort()).toEqual(names);
    const large = b(join(dir, "large"));
    await writeFile(large, "");
    const big = Buffer.alloc(3500, 0x5a);
    sys.set(large, b("user.big"), big);
    expect(sys.get(large, b("user.big")).equals(big)).toBe(true);
  });

  it("fails with the errno's name: a missing entry, a missing attribute, user.* on a symlink", async () => {
    const sys = xattrSyscalls();
    const codeOf = (f: () => unknown) => {
      try {
        f();
      } catch (e) {
        expect(e).toBeInstanceOf(XattrError);
        return (e as XattrError).code;
      }
      return "no error";
    };
    expect(codeOf(() => sys.list(b(join(dir, "missing"))))).toBe("ENOENT");
    await writeFile(join(dir, "plain"), "");
    expect(codeOf(() => sys.get(b(join(dir, "plain")), b("user.none")))).toBe("ENODATA");
    // Never through a symlink: the link itself refuses user.*, its target is untouched.
    await symlink("plain", join(dir, "link"));
    expect(codeOf(() => sys.set(b(join(dir, "link")), b("user.x"), b("1")))).toBe("EPERM");
    expect(sys.list(b(join(dir, "plain")))).toEqual([]);
    if (isRoot) {
      sys.set(b(join(dir, "link")), b("trusted.on-link"), b("1"));
      expect(sys.list(b(join(dir, "link")))).toEqual([b("trusted.on-link")]);
      expect(sys.list(b(join(dir, "plain")))).toEqual([]);
    }
    expect(xattrError(EOPNOTSUPP).message).toMatch(/^E\w*NOTSUP \(not supported by the file system\)$/);
  });
});

/** The native calls, with `fail` deciding which throw (its errno) instead. */
function failing(fail: (op: keyof XattrSyscalls, path: string, name?: string) => number | undefined): XattrSyscalls {
  const real = xattrSyscalls();
  const check = (op: keyof XattrSyscalls, path: Buffer, name?: Buffer) => {
    const errno = fail(op, path.toString(), name?.toString());
    if (errno !== undefined) throw xattrError(errno);
  };
  return {
    list: (p) => (check("list", p), real.list(p)),
    get: (p, n) => (check("get", p, n), real.get(p, n)),
    set: (p, n, v) => (check("set", p, n), real.set(p, n, v)),
    remove: (p, n) => (check("remove", p, n), real.remove(p, n)),
  };
}

describe("failures through the seam", () => {
  it("backup: a file system without xattrs is one warning per import; another failure names the entry and errno, and the walk goes on", async () => {
    const src = join(dir, "src");
    await mkdir(join(src, "sub"), { recursive: true });
    for (const f of ["a", "b", "sub/c", "sub/d"]) await writeFile(join(src, f), f);
    const sys = xattrSyscalls();
    sys.set(b(join(src, "sub", "d")), b("user.kept"), b("1"));
    sys.set(b(join(src, "b")), b("user.denied"), b("2"));
    setXattrSyscalls(
      failing((op, p, name) => {
        if (op === "list" && p.includes("/sub") && !p.endsWith("/d")) return EOPNOTSUPP;
        if (op === "get" && name === "user.denied") return 13; // EACCES
        return undefined;
      }),
    );
    for (let i = 0; i < 2; i++) {
      const warnings: string[] = [];
      const recs = await collect(new FsImporter(src, { onWarning: (w) => warnings.push(w) }).import());
      expect(recs.map((r) => r.pathname)).toEqual(["/", "/a", "/b", "/sub", "/sub/c", "/sub/d"]);
      expect(recs.find((r) => r.pathname === "/sub/d")?.xattrs).toEqual([{ name: "user.kept", value: new Uint8Array(b("1")) }]);
      expect(recs.find((r) => r.pathname === "/b")?.xattrs).toBeUndefined();
      expect(warnings).toEqual([
        `${join(src, "b")}: extended attribute user.denied not backed up: EACCES (permission denied)`,
        expect.stringMatching(new RegExp(`^${join(src, "sub")}: extended attributes not backed up: E\\w*NOTSUP \\(not supported by the file system\\); entries on file systems like it are not reported again$`)),
      ]);
    }
  });

  it("restore: every attribute not set fails its entry by name, the rest of the entry is restored; a directory's fail from finish()", async () => {
    const dst = join(dir, "dst");
    setXattrSyscalls(failing((op, _p, name) => (op === "set" && name !== "user.ok" ? EOPNOTSUPP : undefined)));
    const warnings: string[] = [];
    const exp = new FsExporter(dst, { onWarning: (w) => warnings.push(w) });
    const info = (kind: "file" | "dir", mode: number) => ({ name: "x", kind, size: 2, mode, mtimeNs: 1_600_000_000_000_000_000n, dev: 1n, ino: 1n, uid: 0, gid: 0, nlink: 1 });
    const x = (name: string) => ({ name, value: new Uint8Array(b("v")) });
    expect(await exp.export({ pathname: "/", fileInfo: info("dir", 0o755) })).toEqual({ pathname: "/" });
    expect(await exp.export({ pathname: "/d", fileInfo: info("dir", 0o750), xattrs: [x("user.ok"), x("user.no")] })).toEqual({ pathname: "/d" });
    const res = await exp.export({
      pathname: "/d/f",
      fileInfo: info("file", 0o640),
      xattrs: [x("user.a"), x("user.ok"), x("system.posix_acl_access")],
      content: async function* () {
        yield { offset: 0, length: 2, data: b("hi") };
      },
    });
    expect(res.error).toMatch(/^extended attribute user\.a not set: E\w*NOTSUP \(not supported by the file system\); extended attribute system\.posix_acl_access not set: E\w*NOTSUP/);
    expect(await exp.finish()).toEqual([{ pathname: "/d", error: expect.stringMatching(/^extended attribute user\.no not set: E\w*NOTSUP/) }]);
    expect(warnings).toEqual([]);
    setXattrSyscalls(undefined);
    expect(xattrSyscalls().get(b(join(dst, "d", "f")), b("user.ok")).toString()).toBe("v");
    expect(xattrSyscalls().get(b(join(dst, "d")), b("user.ok")).toString()).toBe("v");
    expect((await stat(join(dst, "d", "f"))).mode & 0o7777).toBe(0o640);
    expect((await stat(join(dst, "d"))).mode & 0o7777).toBe(0o750);
    expect((await stat(join(dst, "d"))).mtimeMs).toBe(1_600_000_000_000);
  });
});
