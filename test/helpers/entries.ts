/**
 * Tree entries for the fuzz properties of trees and snapshot headers: an
 * arbitrary of valid entries (every field, names that are not UTF-8), and
 * the check that a decoded entry holds what restore, ls and `repair
 * snapshots` rely on.
 */
import fc from "fast-check";
import { expect } from "vitest";
import type { EntryKind } from "../../src/connectors/records.js";
import { MAX_RAW_BLOB } from "../../src/repository/codec.js";
import type { Entry } from "../../src/snapshot/tree.js";
import { nameFromBytes } from "../../src/util/names.js";

const KINDS: EntryKind[] = ["file", "dir", "symlink", "fifo", "socket", "chardev", "blockdev", "other"];

const arbName = fc.oneof(fc.string({ minLength: 1, maxLength: 12 }), fc.uint8Array({ minLength: 1, maxLength: 12 }).map(nameFromBytes));
const arbMac = fc.uint8Array({ minLength: 32, maxLength: 32 });
const u64 = fc.bigInt({ min: 0n, max: 2n ** 64n - 1n });

export const arbEntry: fc.Arbitrary<Entry> = fc
  .record(
    {
      name: arbName,
      kind: fc.constantFrom(...KINDS),
      size: fc.oneof(fc.nat(), fc.maxSafeNat()),
      mode: fc.nat({ max: 0o7777 }),
      mtimeNs: fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }),
      ctimeNs: fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }),
      contentTag: fc.string({ maxLength: 34 }),
      dev: u64,
      ino: u64,
      rdev: u64,
      uid: fc.nat({ max: 0xffffffff }),
      gid: fc.nat({ max: 0xffffffff }),
      nlink: fc.nat(),
      username: fc.string({ maxLength: 8 }),
      groupname: fc.string({ maxLength: 8 }),
      target: arbName,
      xattrs: fc.array(fc.record({ name: arbName, value: fc.uint8Array({ maxLength: 16 }) }), { minLength: 1, maxLength: 2 }),
      chunks: fc.array(fc.record({ mac: arbMac, length: fc.nat({ max: MAX_RAW_BLOB }) }), { maxLength: 3 }),
      tree: arbMac,
      error: fc.string({ maxLength: 12 }),
    },
    { requiredKeys: ["name", "kind", "size", "mode", "mtimeNs", "dev", "ino", "uid", "gid", "nlink"] },
  )
  .map((r) => {
    const { name, kind, size, mode, mtimeNs, dev, ino, uid, gid, nlink, ctimeNs, contentTag, rdev, username, groupname, target, xattrs, chunks, tree, error } = r;
    const e: Entry = { name, info: { name, kind, size, mode, mtimeNs, dev, ino, uid, gid, nlink } };
    if (ctimeNs !== undefined) e.info.ctimeNs = ctimeNs;
    if (contentTag !== undefined) e.info.contentTag = contentTag;
    if (rdev !== undefined && rdev !== 0n) e.info.rdev = rdev;
    if (username !== undefined) e.info.username = username;
    if (groupname !== undefined) e.info.groupname = groupname;
    if (target !== undefined) e.target = target;
    if (xattrs !== undefined) e.xattrs = xattrs;
    if (chunks !== undefined) e.chunks = chunks;
    if (tree !== undefined) e.tree = tree;
    if (error !== undefined) e.error = error;
    return e;
  });

const safeNat = (n: unknown) => typeof n === "number" && Number.isSafeInteger(n) && n >= 0;
const optional = (v: unknown, is: (v: unknown) => boolean) => v === undefined || is(v);
const isMac = (v: unknown) => v instanceof Uint8Array && v.byteLength === 32;

/** A decoded entry has every field of the type it claims, and lengths a file and its chunks can have. */
export function expectUsableEntry(e: Entry): void {
  const i = e.info;
  expect(typeof e.name === "string" && i.name === e.name).toBe(true);
  expect(KINDS).toContain(i.kind);
  expect(safeNat(i.size) && Number.isSafeInteger(i.mode) && Number.isSafeInteger(i.uid) && Number.isSafeInteger(i.gid) && Number.isSafeInteger(i.nlink)).toBe(true);
  expect(typeof i.mtimeNs === "bigint" && typeof i.dev === "bigint" && typeof i.ino === "bigint").toBe(true);
  expect(optional(i.ctimeNs, (v) => typeof v === "bigint") && optional(i.rdev, (v) => typeof v === "bigint")).toBe(true);
  expect(optional(i.username, (v) => typeof v === "string") && optional(i.groupname, (v) => typeof v === "string")).toBe(true);
  expect(optional(i.contentTag, (v) => typeof v === "string")).toBe(true);
  expect(optional(e.target, (v) => typeof v === "string") && optional(e.error, (v) => typeof v === "string")).toBe(true);
  expect(optional(e.tree, isMac)).toBe(true);
  for (const x of e.xattrs ?? []) expect(typeof x.name === "string" && x.value instanceof Uint8Array).toBe(true);
  for (const c of e.chunks ?? []) expect(isMac(c.mac) && safeNat(c.length) && c.length <= MAX_RAW_BLOB).toBe(true);
}
