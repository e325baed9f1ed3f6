/**
 * TarReader on hand-made headers for what the tools rarely write: GNU
 * base-256 numbers, the signed checksum of old tars, pax global headers,
 * a directory whose declared data does follow (passed over), unknown and
 * volume-label typeflags, and an archive fed in pieces of one byte.
 */
import { describe, expect, it } from "vitest";
import { paxRecord, padding, ustarBlock } from "../../src/connectors/tar/format.js";
import { TarDamage, TarReader } from "../../src/connectors/tar/reader.js";
import type { TarMember } from "../../src/connectors/tar/reader.js";

const header = (name: string, typeflag: string, size = 0, extra: Partial<Parameters<typeof ustarBlock>[0]> = {}) =>
  ustarBlock({ name, mode: 0o644, uid: 1, gid: 2, size, mtime: 1_600_000_000, typeflag: typeflag.charCodeAt(0), ...extra });
const data = (s: string) => Buffer.concat([Buffer.from(s), padding(s.length)]);
const END = Buffer.alloc(1024);

function resum(b: Buffer, signed = false): Buffer {
  b.fill(0x20, 148, 156);
  let sum = 0;
  for (const c of b) sum += signed && c > 127 ? c - 256 : c;
  b.write(`${sum.toString(8).padStart(6, "0")}\0 `, 148, "latin1");
  return b;
}

async function readAll(archive: Buffer, piece = 1 << 20): Promise<{ members: (TarMember & { content: string })[]; reader: TarReader }> {
  let pos = 0;
  const reader = new TarReader({
    read: () => {
      if (pos >= archive.length) return Promise.resolve(null);
      const c = archive.subarray(pos, pos + piece);
      pos += c.length;
      return Promise.resolve(Buffer.from(c));
    },
  });
  const members: (TarMember & { content: string })[] = [];
  for (let m = await reader.next(); m !== null; m = await reader.next()) {
    const parts: Buffer[] = [];
    for (let d = await reader.read(); d !== null; d = await reader.read()) parts.push(Buffer.from(d));
    members.push({ ...m, content: Buffer.concat(parts).toString() });
  }
  return { members, reader };
}

describe("TarReader", () => {
  it("reads base-256 numbers and the signed checksum", async () => {
    const h = header("big", "0", 5);
    // size 5 and uid 3000000 in GNU base-256: 0x80 then big-endian bytes
    h.fill(0, 124, 136);
    h[124] = 0x80;
    h[135] = 5;
    h.fill(0, 108, 116);
    h[108] = 0x80;
    h.writeUIntBE(3_000_000, 113, 3);
    h[265] = 0xe9; // a uname byte over 127: the signed sum differs from the unsigned one
    resum(h, true);
    const { members } = await readAll(Buffer.concat([h, data("hello"), END]));
    expect(members.map((m) => [m.name, m.size, m.uid, m.content])).toEqual([["big", 5, 3_000_000, "hello"]]);
  });

  it("applies pax global headers to every later member, a local record overriding them", async () => {
    const g = Buffer.concat([paxRecord("uname", "global"), paxRecord("mtime", "1.5")]);
    const x = paxRecord("uname", "local");
    const archive = Buffer.concat([header("g", "g", g.length), data(g.toString("latin1")), header("a", "0"), header("x", "x", x.length), data(x.toString()), header("b", "0"), END]);
    const { members } = await readAll(archive);
    expect(members.map((m) => [m.name, m.uname, m.mtimeNs])).toEqual([
      ["a", "global", 1_500_000_000n],
      ["b", "local", 1_500_000_000n],
    ]);
  });

  it("passes over data that does follow a directory header, and notes a size with no data", async () => {
    const withData = Buffer.concat([header("d/", "5", 600), data("x".repeat(600)), header("f", "0", 2), data("ok"), END]);
    const a = await readAll(withData);
    expect(a.members.map((m) => [m.name, m.kind, m.note, m.content])).toEqual([
      ["d/", "dir", undefined, "x".repeat(600)],
      ["f", "file", undefined, "ok"],
    ]);
    const without = Buffer.concat([header("d/", "5", 600), header("f", "0", 2), data("ok"), END]);
    const b = await readAll(without);
    expect(b.members.map((m) => [m.name, m.size, m.content])).toEqual([
      ["d/", 0, ""],
      ["f", 2, "ok"],
    ]);
    expect(b.members[0]?.note).toMatch(/a directory header declares 600 bytes of data but none follows/);
  });

  it("gives unknown typeflags and volume labels no kind, and passes over their data", async () => {
    const archive = Buffer.concat([header("label", "V"), header("weird", "Q", 3), data("abc"), header("f", "0", 1), data("z"), END]);
    const { members } = await readAll(archive, 1); // one byte at a time
    expect(members.map((m) => [m.name, m.kind, m.content])).toEqual([
      ["label", undefined, ""],
      ["weird", undefined, "abc"],
      ["f", "file", "z"],
    ]);
  });

  it("reports where the archive ends without its marker, and damage once", async () => {
    const { reader } = await readAll(Buffer.concat([header("f", "0", 1), data("z")]));
    expect(reader.noEndMarker).toBe(true);
    const bad = Buffer.concat([header("f", "0", 1), data("z"), header("g", "0")]);
    bad.writeUInt8(0x41, 1024 + 100); // a mode byte: checksum no longer matches
    const r = new TarReader({ read: (() => { let done = false; return () => Promise.resolve(done ? null : ((done = true), bad)); })() });
    expect((await r.next())?.name).toBe("f");
    const e = await r.next().catch((x: unknown) => x);
    expect(e).toBeInstanceOf(TarDamage);
    expect((e as TarDamage).message).toBe('bad header checksum at byte offset 1024 (member "g")');
    await expect(r.next()).rejects.toBe(e);
  });
});
