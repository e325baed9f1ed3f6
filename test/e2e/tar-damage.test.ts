/**
 * What GNU tar accepts, coffer accepts; what is damaged gets a clear error.
 * Through the built CLI (`coffer backup tar:FILE`), on archives made by GNU
 * tar and then cut or altered byte by byte:
 * - the ./ prefixes of `tar -C DIR .` on hard-link names;
 * - an archive cut after a complete member (no end-of-archive marker):
 *   imported, with a warning;
 * - a later member of a name replaces the earlier one, as on extraction;
 * - a directory, FIFO or hard-link header declaring a size with no data
 *   after it: named in a warning, its size ignored (GNU tar extracts it);
 * - cut inside a member, a bad header checksum, a bad size field, a bad
 *   pax record: the member and the byte offset named, exit 3 when members
 *   were stored, 1 when none were; never a stack trace, never another code.
 */
import { execFileSync } from "node:child_process";
import { promises as fsp } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type CofferResult, describeRun, type Env, EXIT, expectNoStackTrace, FAST_KDF } from "../helpers/cli.js";
import { cofferInProcess } from "../helpers/in-process.js";
import { dumpTree } from "../helpers/tar-tools.js";

const PASS = "tar-damage-e2e";
let base: string;
let repo: string;
let n = 0;

const env = (): Env => ({ HOME: base, TMPDIR: path.join(base, "tmp"), COFFER_PASSPHRASE: PASS });
const fresh = (what: string) => path.join(base, `${what}-${++n}`);

beforeAll(async () => {
  base = await fsp.mkdtemp(path.join(tmpdir(), "coffer-e2e-tar-damage-"));
  await fsp.mkdir(path.join(base, "tmp"));
  repo = path.join(base, "repo");
  const r = await cofferInProcess(["at", repo, "create", ...FAST_KDF], { env: env(), cwd: base });
  expect(r.exitCode, describeRun(r)).toBe(EXIT.OK);
});

afterAll(async () => {
  await fsp.rm(base, { recursive: true, force: true });
});

function tar(args: string[]): string {
  return execFileSync("tar", args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

/** A directory of files named a, b, c... (each `size` bytes of its letter), archived by GNU tar with `-C DIR .`. */
async function archive(files: Record<string, string | number>, format = "gnu"): Promise<{ file: string; data: Buffer }> {
  const dir = fresh("src");
  await fsp.mkdir(dir);
  for (const [name, v] of Object.entries(files)) {
    await fsp.mkdir(path.dirname(path.join(dir, name)), { recursive: true });
    await fsp.writeFile(path.join(dir, name), typeof v === "number" ? Buffer.alloc(v, name.charCodeAt(name.length - 1)) : v);
  }
  const file = `${fresh("in")}.tar`;
  tar([`--format=${format}`, "--sort=name", "--mtime=@1600000000", "-cf", file, "-C", dir, "."]);
  return { file, data: await fsp.readFile(file) };
}

async function write(data: Buffer): Promise<string> {
  const file = `${fresh("altered")}.tar`;
  await fsp.writeFile(file, data);
  return file;
}

async function backup(file: string): Promise<CofferResult> {
  const r = await cofferInProcess(["at", repo, "backup", `tar:${file}`], { env: env(), cwd: base });
  expectNoStackTrace(r);
  expect([EXIT.OK, EXIT.ERROR, EXIT.PARTIAL], describeRun(r)).toContain(r.exitCode);
  return r;
}

/** The offset of the header block of the member named `name` (as GNU tar wrote it). */
function headerAt(data: Buffer, name: string): number {
  for (let i = 0; i + 512 <= data.length; i += 512) {
    const z = data.indexOf(0, i);
    if (data.toString("latin1", i, Math.min(z, i + 100)) === name && data.toString("latin1", i + 257, i + 262) === "ustar") return i;
  }
  throw new Error(`no header for ${name}`);
}

/** Rewrites a header's checksum after an edit. */
function fixChecksum(data: Buffer, at: number): void {
  data.fill(0x20, at + 148, at + 156);
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += data[at + i] as number;
  data.write(`${sum.toString(8).padStart(6, "0")}\0 `, at + 148, "latin1");
}

async function restored(r: CofferResult): Promise<Map<string, string>> {
  const id = r.stdout.trim();
  const out = fresh("out");
  const rr = await cofferInProcess(["at", repo, "restore", id, "--to", out], { env: env(), cwd: base });
  expect(rr.exitCode, describeRun(rr)).toBe(EXIT.OK);
  const m = new Map<string, string>();
  for (const [k, e] of dumpTree(out)) m.set(Buffer.from(k, "hex").toString("utf8"), e.kind === "file" ? (e.sha256 ?? "") : e.kind);
  return m;
}

describe("what GNU tar accepts, coffer accepts", () => {
  it("hard links in a `tar -C DIR .` pax archive keep their ./ prefix: imported as one inode", async () => {
    const dir = fresh("hard");
    await fsp.mkdir(path.join(dir, "hard"), { recursive: true });
    await fsp.writeFile(path.join(dir, "hard/a"), "three names\n");
    await fsp.link(path.join(dir, "hard/a"), path.join(dir, "hard/b"));
    await fsp.link(path.join(dir, "hard/a"), path.join(dir, "hard/c"));
    const file = `${fresh("in")}.tar`;
    tar(["--format=pax", "-cf", file, "-C", dir, "."]);
    expect(tar(["-tvf", file])).toMatch(/\.\/hard\/[abc] link to \.\/hard\/[abc]/);
    const r = await backup(file);
    expect(r.exitCode, describeRun(r)).toBe(EXIT.OK);
    const out = fresh("out");
    expect((await cofferInProcess(["at", repo, "restore", r.stdout.trim(), "--to", out], { env: env(), cwd: base })).exitCode).toBe(EXIT.OK);
    const inodes = await Promise.all(["a", "b", "c"].map(async (x) => (await fsp.stat(path.join(out, "hard", x))).ino));
    expect(new Set(inodes).size).toBe(1);
  });

  it("an archive cut after a complete member (no end-of-archive marker) is imported, with a warning", async () => {
    const { file, data } = await archive({ a: 600, b: 700, c: 10 });
    const end = headerAt(data, "./c") + 1024; // c's header and its one block of data
    const cut = await write(data.subarray(0, end));
    expect(tar(["-tf", cut]).split("\n")).toContain("./c"); // GNU tar lists it all
    const r = await backup(cut);
    expect(r.exitCode, describeRun(r)).toBe(EXIT.OK);
    expect(r.stderr).toMatch(/ends without its end-of-archive marker/);
    const got = await restored(r);
    expect([...got.keys()].sort()).toEqual(["", "a", "b", "c"]);
    void file;
  });

  it("a later member of the same name replaces the earlier one", async () => {
    const first = await archive({ "d/x": "first\n", y: "y\n" });
    const second = await archive({ "d/x": "second, longer\n" });
    const both = `${fresh("both")}.tar`;
    await fsp.copyFile(first.file, both);
    tar(["-Af", both, second.file]); // GNU tar's --concatenate: ./d/x twice
    expect(tar(["-tf", both]).split("\n").filter((l) => l === "./d/x")).toHaveLength(2);
    const r = await backup(both);
    expect(r.exitCode, describeRun(r)).toBe(EXIT.OK);
    const x = await cofferInProcess(["at", repo, "cat", `${r.stdout.trim()}:/d/x`], { env: env(), cwd: base });
    expect(x.stdout).toBe("second, longer\n");
    expect((await cofferInProcess(["at", repo, "cat", `${r.stdout.trim()}:/y`], { env: env(), cwd: base })).stdout).toBe("y\n");
  });

  it("a directory, FIFO or hard-link header that declares a size with no data after it: named in a warning, size ignored", async () => {
    const dir = fresh("kinds");
    await fsp.mkdir(path.join(dir, "sub"), { recursive: true });
    await fsp.writeFile(path.join(dir, "f"), "content\n");
    await fsp.link(path.join(dir, "f"), path.join(dir, "g"));
    execFileSync("mkfifo", [path.join(dir, "p")]);
    const file = `${fresh("in")}.tar`;
    tar(["--format=gnu", "--sort=name", "-cf", file, "-C", dir, "."]);
    const data = await fsp.readFile(file);
    for (const name of ["./sub/", "./p", "./g"]) {
      const at = headerAt(data, name);
      data.write("00000002000\0", at + 124, "latin1"); // 1024 bytes declared
      fixChecksum(data, at);
    }
    const altered = await write(data);
    const r = await backup(altered);
    expect(r.exitCode, describeRun(r)).toBe(EXIT.OK);
    expect(r.stderr).toMatch(/member "\.\/sub\/" at byte offset \d+: a directory header declares 1024 bytes of data but none follows: size ignored/);
    expect(r.stderr).toMatch(/member "\.\/p" at byte offset \d+: a fifo header declares 1024 bytes/);
    expect(r.stderr).toMatch(/member "\.\/g" at byte offset \d+: a hard link header declares 1024 bytes/);
    const got = await restored(r);
    expect(got.get("p")).toBe("fifo");
    expect(got.get("sub")).toBe("dir");
    expect(got.get("g")).toBe(got.get("f"));
  });
});

describe("a damaged archive: the member and the byte offset named, exit 3 after stored members, 1 before any", () => {
  it("cut inside a member's data", async () => {
    const { data } = await archive({ a: 600, b: 5000, c: 10 });
    const at = headerAt(data, "./b");
    const cut = await write(data.subarray(0, at + 512 + 2048));
    const r = await backup(cut);
    expect(r.exitCode, describeRun(r)).toBe(EXIT.PARTIAL);
    expect(r.stderr).toContain(`/b: cannot read: damaged tar archive: archive cut inside the member's data (2952 more bytes expected) at byte offset ${at + 512 + 2048} (member "./b")`);
    expect((await restored(r)).has("a")).toBe(true);
  });

  it("cut inside a header", async () => {
    const { data } = await archive({ a: 600, b: 10 });
    const at = headerAt(data, "./b");
    const r = await backup(await write(data.subarray(0, at + 100)));
    expect(r.exitCode, describeRun(r)).toBe(EXIT.PARTIAL);
    expect(r.stderr).toContain(`damaged tar archive: archive cut inside a header (100 of 512 bytes) at byte offset ${at}`);
  });

  it("a bad header checksum", async () => {
    const { data } = await archive({ a: 600, b: 10, c: 10 });
    const at = headerAt(data, "./b");
    data.writeUInt8((data[at + 100] as number) ^ 1, at + 100); // the mode, checksum not fixed
    const r = await backup(await write(data));
    expect(r.exitCode, describeRun(r)).toBe(EXIT.PARTIAL);
    expect(r.stderr).toContain(`/b: damaged tar archive: bad header checksum at byte offset ${at} (member "./b")`);
    // The first member's header: nothing stored, exit 1.
    const first = Buffer.from(data);
    first.writeUInt8((first[100] as number) ^ 1, 100);
    const r1 = await backup(await write(first));
    expect(r1.exitCode, describeRun(r1)).toBe(EXIT.ERROR);
    expect(r1.stderr).toMatch(/damaged tar archive: bad header checksum at byte offset 0 \(member "\.\/"\)/);
  });

  it("a bad size field", async () => {
    const { data } = await archive({ a: 600, b: 10 });
    const at = headerAt(data, "./b");
    data.write("0000000x012\0", at + 124, "latin1");
    fixChecksum(data, at);
    const r = await backup(await write(data));
    expect(r.exitCode, describeRun(r)).toBe(EXIT.PARTIAL);
    expect(r.stderr).toContain(`/b: damaged tar archive: bad size field at byte offset ${at} (member "./b")`);
  });

  it("a bad pax record", async () => {
    const { data } = await archive({ a: 600, "b-with-a-pax-path-é": 10 }, "pax");
    const rec = data.indexOf("path=./b-with");
    expect(rec).toBeGreaterThan(0);
    let lenAt = rec - 1; // the record's length digits, before its space
    while ((data[lenAt - 1] as number) >= 0x30 && (data[lenAt - 1] as number) <= 0x39) lenAt--;
    const len = Number(data.toString("latin1", lenAt, rec - 1));
    data.write(String(len - 1).padStart(String(len).length, "0"), lenAt, "latin1"); // one byte short: no newline at its end
    const r = await backup(await write(data));
    expect(r.exitCode, describeRun(r)).toBe(EXIT.PARTIAL);
    expect(r.stderr).toContain(`damaged tar archive: bad pax record (no newline at the end) at byte offset ${lenAt} (header "./PaxHeaders/b-with-a-pax-path-é")`);
  });

  it("a gzip stream cut inside a member (tar+gz:), and one cut after the end of the tar archive", async () => {
    const { file } = await archive({ a: 600, b: 300_000, c: 10 });
    const gz = gzipSync(await fsp.readFile(file), { level: 0 }); // stored: offsets in the gzip stream follow the tar's
    const at = `${fresh("cut")}.tgz`;
    await fsp.writeFile(at, gz.subarray(0, 200_000));
    const r = await cofferInProcess(["at", repo, "backup", `tar+gz:${at}`], { env: env(), cwd: base });
    expectNoStackTrace(r);
    expect(r.exitCode, describeRun(r)).toBe(EXIT.PARTIAL);
    expect(r.stderr).toMatch(/\/b: cannot read: damaged tar archive: not a valid gzip stream \(unexpected end of file\) at byte offset \d+ \(member "\.\/b"\)/);
    // The tar archive is whole, only the gzip trailer is cut: a warning.
    const tail = `${fresh("cut")}.tgz`;
    await fsp.writeFile(tail, gz.subarray(0, gz.length - 4));
    const t = await cofferInProcess(["at", repo, "backup", `tar+gz:${tail}`], { env: env(), cwd: base });
    expect(t.exitCode, describeRun(t)).toBe(EXIT.OK);
    expect(t.stderr).toMatch(/the gzip stream is damaged after the end of the tar archive/);
  });

  it("not a tar archive at all: exit 1", async () => {
    const r = await backup(await write(Buffer.from("this is not a tar archive\n".repeat(100))));
    expect(r.exitCode, describeRun(r)).toBe(EXIT.ERROR);
    expect(r.stderr).toMatch(/damaged tar archive: bad header checksum at byte offset 0/);
  });
});
