/**
 * Names are bytes in tar archives. The importer reads them from archives
 * GNU tar (gnu and pax formats: raw bytes in ustar fields, GNU long names
 * and pax path records) and Python's tarfile (pax with hdrcharset=BINARY)
 * wrote of a tree with names that are not UTF-8: file, directory, symlink
 * target, hard link and xattr names come out as nameFromBytes() of the
 * bytes. The exporter writes them back as bytes: raw in the ustar fields
 * when they fit (as GNU tar writes them), else in pax records with
 * hdrcharset=BINARY; GNU tar and bsdtar extract them byte-exact.
 */
import { execFileSync } from "node:child_process";
import { promises as fsp } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ExportRecord, ImportRecord } from "../../src/connectors/records.js";
import { TarExporter } from "../../src/connectors/tar/exporter.js";
import { TarImporter } from "../../src/connectors/tar/importer.js";
import { nameFromBytes, nameToBytes } from "../../src/util/names.js";
import { python, setXattrPy } from "../helpers/tar-tools.js";

const B = (s: string) => Buffer.from(s, "latin1"); // a byte string written as latin1 text
const LAT = B("lat\xe9");
const DIR = B("dir\x80");
const TARGET = B("tgt\xff\xfe");
const LONG = Buffer.concat([B("long-\xe9-"), Buffer.alloc(120, 0x78)]); // over 100 bytes: a long name
const XNAME = B("user.n\xe9");

let base: string;
let src: string;

const bytesPath = (...parts: Buffer[]) => Buffer.concat(parts.flatMap((p, i) => (i === 0 ? [p] : [Buffer.from("/"), p])));

beforeAll(async () => {
  base = await fsp.mkdtemp(join(tmpdir(), "coffer-tar-names-"));
  src = join(base, "src");
  await fsp.mkdir(src);
  const s = Buffer.from(src);
  await fsp.writeFile(bytesPath(s, LAT), "latin-1 name\n");
  await fsp.mkdir(bytesPath(s, DIR));
  await fsp.writeFile(bytesPath(s, DIR, B("f")), "in a raw dir\n");
  await fsp.writeFile(bytesPath(s, LONG), "long raw name\n");
  await fsp.link(bytesPath(s, LAT), bytesPath(s, B("hard")));
  await fsp.symlink(TARGET, bytesPath(s, B("sym")));
  python("import os,sys; os.setxattr(bytes.fromhex(sys.argv[1]), bytes.fromhex(sys.argv[2]), b'v')", [bytesPath(s, LAT).toString("hex"), XNAME.toString("hex")]);
});

afterAll(async () => {
  await fsp.rm(base, { recursive: true, force: true });
});

async function importAll(file: string): Promise<Map<string, ImportRecord>> {
  const imp = new TarImporter(file, { gzip: false });
  const out = new Map<string, ImportRecord>();
  for await (const r of imp.import()) {
    if (r.open !== undefined) for await (const _ of await r.open());
    out.set(r.pathname, r);
  }
  await imp.close();
  return out;
}

const p = (...parts: Buffer[]) => `/${parts.map((x) => nameFromBytes(x)).join("/")}`;

function expectRawTree(m: Map<string, ImportRecord>, opts: { xattrs: boolean }): void {
  expect([...m.keys()].filter((k) => m.get(k)?.error !== undefined)).toEqual([]);
  expect(m.get(p(LAT))?.fileInfo.kind).toBe("file");
  expect(m.get(p(DIR))?.fileInfo.kind).toBe("dir");
  expect(m.get(p(DIR, B("f")))?.fileInfo.kind).toBe("file");
  expect(m.get(p(LONG))?.fileInfo.kind).toBe("file");
  expect(nameToBytes(m.get("/sym")?.target ?? "")).toEqual(TARGET);
  const links = [m.get("/hard"), m.get(p(LAT))].map((r) => r?.linkTarget);
  expect(links.filter((l) => l !== undefined).map((l) => nameToBytes(l as string).toString("latin1"))).toEqual([
    // One of the two names is the link, pointing at the other.
    links[0] !== undefined ? `/${LAT.toString("latin1")}` : "/hard",
  ]);
  if (opts.xattrs) expect(m.get(p(LAT))?.xattrs?.map((x) => nameToBytes(x.name))).toContainEqual(XNAME);
}

describe("tar names as bytes: import", () => {
  it("GNU tar, gnu format (raw ustar fields, GNU long name)", async () => {
    const file = join(base, "gnu.tar");
    execFileSync("tar", ["--format=gnu", "-cf", file, "-C", src, "."]);
    expectRawTree(await importAll(file), { xattrs: false });
  });

  it("GNU tar, pax format with --xattrs (pax path records, an xattr name that is not UTF-8)", async () => {
    const file = join(base, "pax.tar");
    execFileSync("tar", ["--format=pax", "--xattrs", "--xattrs-include=*", "-cf", file, "-C", src, "."]);
    expectRawTree(await importAll(file), { xattrs: true });
  });

  it("Python tarfile, pax format (hdrcharset=BINARY)", async () => {
    const file = join(base, "py.tar");
    python(
      `import tarfile,sys,os
os.chdir(sys.argv[2])
with tarfile.open(sys.argv[1], "w", format=tarfile.PAX_FORMAT) as t: t.add(".")`,
      [file, src],
    );
    expect((await fsp.readFile(file)).includes("hdrcharset=BINARY")).toBe(true);
    expectRawTree(await importAll(file), { xattrs: false });
  });
});

describe("tar names as bytes: export", () => {
  const file = (n: number) => ({ name: "", kind: "file" as const, size: n, mode: 0o644, mtimeNs: 1_600_000_000_000_000_000n, dev: 0n, ino: 0n, uid: 0, gid: 0, nlink: 1 });
  const content = (data: string) => () =>
    (async function* () {
      yield { offset: 0, length: data.length, data: Buffer.from(data) };
    })();

  async function exportRaw(out: string): Promise<void> {
    const ex = new TarExporter(out, { gzip: false });
    const recs: ExportRecord[] = [
      { pathname: "/", fileInfo: { ...file(0), kind: "dir", mode: 0o755 } },
      { pathname: p(LAT), fileInfo: file(3), content: content("abc"), xattrs: [{ name: nameFromBytes(XNAME), value: new Uint8Array([1, 2]) }] },
      { pathname: p(DIR), fileInfo: { ...file(0), kind: "dir", mode: 0o755 } },
      { pathname: p(DIR, B("f")), fileInfo: file(1), content: content("f") },
      { pathname: p(LONG), fileInfo: file(4), content: content("long") },
      { pathname: "/sym", fileInfo: { ...file(0), kind: "symlink", mode: 0o777 }, target: nameFromBytes(TARGET) },
    ];
    for (const r of recs) expect((await ex.export(r)).error).toBeUndefined();
    await ex.finish();
    await ex.close();
  }

  it("writes a raw name that fits raw in the ustar field, a long one in pax path with hdrcharset=BINARY", async () => {
    const out = join(base, "out.tar");
    await exportRaw(out);
    const data = await fsp.readFile(out);
    // lat\xe9 in a ustar name field, as GNU tar writes it.
    let at = -1;
    for (let i = 0; i < data.length && at < 0; i += 512) if (data.subarray(i, i + LAT.length + 1).equals(Buffer.concat([LAT, Buffer.alloc(1)]))) at = i;
    expect(at).toBeGreaterThan(0);
    expect(data.toString("latin1", at + 257, at + 263)).toBe("ustar\0");
    expect(data.includes(Buffer.concat([B("path="), LONG, B("\n")]))).toBe(true);
    expect(data.includes("hdrcharset=BINARY")).toBe(true);
    expect(data.includes(Buffer.concat([B("SCHILY.xattr."), XNAME, B("=")]))).toBe(true);
  });

  it("GNU tar and bsdtar extract it byte-exact, and the importer reads it back", async () => {
    const out = join(base, "out2.tar");
    await exportRaw(out);
    for (const [tool, args] of [
      ["tar", ["--xattrs", "--xattrs-include=*", "-xf", out]],
      ["bsdtar", ["-xf", out]],
    ] as const) {
      const dir = join(base, `x-${tool}`);
      await fsp.mkdir(dir);
      execFileSync(tool, [...args, "-C", dir], { stdio: ["ignore", "pipe", "pipe"] });
      const d = Buffer.from(dir);
      const names = (await fsp.readdir(d, { encoding: "buffer" })).map((n) => n.toString("latin1")).sort();
      expect(names, tool).toEqual([DIR, LAT, LONG, B("sym")].map((n) => n.toString("latin1")).sort());
      expect(await fsp.readFile(bytesPath(d, DIR, B("f")), "utf8")).toBe("f");
      expect(await fsp.readFile(bytesPath(d, LONG), "utf8")).toBe("long");
      expect(await fsp.readlink(bytesPath(d, B("sym")), { encoding: "buffer" })).toEqual(TARGET);
      if (tool === "tar") {
        const x = python("import os,sys; print(os.getxattr(bytes.fromhex(sys.argv[1]), bytes.fromhex(sys.argv[2])).hex())", [bytesPath(d, LAT).toString("hex"), XNAME.toString("hex")]);
        expect(x.trim()).toBe("0102");
      }
    }
    // GNU tar lists the names as bytes.
    const gnu = execFileSync("tar", ["--quoting-style=literal", "-tf", out], { encoding: "latin1", stdio: ["ignore", "pipe", "pipe"] });
    expect(gnu.split("\n")).toContain(LAT.toString("latin1"));
    const m = await importAll(out);
    expect(m.get(p(LAT))?.xattrs?.map((x) => nameToBytes(x.name))).toEqual([XNAME]);
    expect(nameToBytes(m.get("/sym")?.target ?? "")).toEqual(TARGET);
    expect(m.has(p(LONG))).toBe(true);
  });

  it("setXattrPy sets an xattr without the attr package", async () => {
    const f = join(base, "x");
    await fsp.writeFile(f, "");
    setXattrPy(f, "user.k", Buffer.from("v"));
    expect(python("import os,sys; print(os.getxattr(sys.argv[1], 'user.k'))", [f]).trim()).toBe("b'v'");
  });
});
