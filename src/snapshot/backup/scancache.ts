/**
 * The scan cache: entries of a running backup, by path, so that importers
 * may produce records in any order and the trees are built bottom-up at the
 * end. Entries are held in memory (as their packEntry() bytes) up to a
 * budget; past it they all move to node:sqlite in a temporary directory, so
 * that memory stays bounded whatever the tree size. Keys are the path's
 * components joined by a NUL byte, so a byte-order scan visits a directory,
 * then its whole subtree, then its next sibling.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DatabaseSync, type StatementSync } from "node:sqlite";
import { decode } from "@msgpack/msgpack";
import { decodeEntry, type Entry, isTreeDir, packEntryView } from "../tree.js";
import { nameFromBytes, nameToBytes } from "../../util/names.js";

const BATCH = 2000;
/**
 * Bytes of entries held in memory before they move to disk (packed bytes,
 * keys and bookkeeping). In memory, a backup's main thread is spared
 * sqlite's inserts and ordered scan (docs/PERFORMANCE.md).
 */
export const SCAN_CACHE_MEMORY = 48 << 20;

/** "/a/b" as a key: "a\0b" (a path of the usual form without splitting it). */
const NORMAL_PATH = /^(?:\/[^/]+)+$/;

function keyOf(path: string): string {
  if (NORMAL_PATH.test(path)) return path.slice(1).replaceAll("/", "\0");
  return path
    .split("/")
    .filter((c) => c !== "")
    .join("\0");
}

export function pathKey(path: string): Buffer {
  return nameToBytes(keyOf(path));
}

/**
 * Entries in memory: their packed bytes copied one after another into 1 MiB
 * arenas (no buffer and no object per entry), and a map from key to slot.
 */
class Arena {
  private readonly blocks: Uint8Array[] = [];
  private block = new Uint8Array(0);
  private at = 0;
  /** Per slot: block, offset, length, whether a tree directory. */
  private readonly slots: number[] = [];
  readonly index = new Map<string, number>();
  /** Estimated bytes held: packed bytes, keys and map slots (the last arena's unused end aside). */
  bytes = 0;

  set(key: string, packed: Uint8Array, dir: boolean): void {
    const n = packed.byteLength;
    if (this.at + n > this.block.byteLength) {
      this.block = new Uint8Array(Math.max(ARENA_BLOCK, n));
      this.blocks.push(this.block);
      this.at = 0;
    }
    this.block.set(packed, this.at);
    const had = this.index.has(key);
    this.index.set(key, this.slots.length);
    this.slots.push(this.blocks.length - 1, this.at, n, dir ? 1 : 0);
    this.at += n;
    this.bytes += n + (had ? 0 : 2 * key.length + SLOT_OVERHEAD);
  }

  /** The packed bytes of slot `s`: a view into its arena. */
  packed(s: number): Uint8Array {
    const off = this.slots[s + 1]!;
    return this.blocks[this.slots[s]!]!.subarray(off, off + this.slots[s + 2]!);
  }

  /** Whether slot `s` is a directory that gets a tree. */
  dir(s: number): boolean {
    return this.slots[s + 3] === 1;
  }
}

const ARENA_BLOCK = 1 << 20;
/** Estimated bytes of an entry in memory besides its packed bytes and key (map slot, slot numbers). */
const SLOT_OVERHEAD = 64;

interface Disk {
  dir: string;
  db: DatabaseSync;
  insert: StatementSync;
  lookup: StatementSync;
}

/** Whether a string has UTF-16 code units at or above 0xD800, where their order differs from UTF-8 byte order. */
const WIDE = /[\uD800-\uFFFF]/;

export class ScanCache {
  private readonly parent: string;
  private readonly budget: number;
  /** Entries in memory; null once they have moved to disk. */
  private mem: Arena | null = new Arena();
  /** Whether a key in memory has code units where string order is not byte order. */
  private wide = false;
  private disk: Disk | null = null;
  private inBatch = 0;
  /** While frozen (a checkpoint is scanning), entries wait here. */
  private held: [string, Entry][] | null = null;

  /** `memoryBytes`: how much is held in memory before everything moves to disk (0: on disk from the first entry). */
  constructor(parent = tmpdir(), memoryBytes = SCAN_CACHE_MEMORY) {
    this.parent = parent;
    this.budget = memoryBytes;
  }

  /** Whether the entries have moved to disk. */
  get onDisk(): boolean {
    return this.disk !== null;
  }

  /** Until thaw(), put() holds entries in memory so that a scan sees a fixed set. */
  freeze(): void {
    this.held ??= [];
  }

  thaw(): void {
    const held = this.held;
    this.held = null;
    for (const [p, e] of held ?? []) this.put(p, e);
  }

  get(path: string): Entry | undefined {
    if (this.held) {
      for (let i = this.held.length - 1; i >= 0; i--) if (this.held[i]![0] === path) return this.held[i]![1];
    }
    let packed: Uint8Array | undefined;
    if (this.mem) {
      const s = this.mem.index.get(keyOf(path));
      packed = s === undefined ? undefined : this.mem.packed(s);
    } else {
      this.commit();
      packed = (this.disk!.lookup.get(pathKey(path)) as { v: Uint8Array } | undefined)?.v;
    }
    return packed ? decodeEntry(decode(packed, { useBigInt64: true }), "scan cache") : undefined;
  }

  put(path: string, entry: Entry): void {
    if (this.held) {
      this.held.push([path, entry]);
      return;
    }
    const key = keyOf(path);
    const packed = packEntryView(entry);
    const dir = isTreeDir(entry);
    if (this.mem) {
      this.mem.set(key, packed, dir);
      if (!this.wide && WIDE.test(key)) this.wide = true;
      if (this.mem.bytes > this.budget) this.spill();
      return;
    }
    this.insert(key, packed, dir);
  }

  private insert(key: string, packed: Uint8Array, dir: boolean): void {
    const d = this.disk!;
    if (this.inBatch === 0) d.db.exec("BEGIN");
    d.insert.run(nameToBytes(key), packed, dir ? 1 : 0);
    if (++this.inBatch >= BATCH) this.commit();
  }

  /** Moves every entry to disk; from here on they are kept there. */
  private spill(): void {
    const dir = mkdtempSync(join(this.parent, "coffer-scan-"));
    try {
      const db = new DatabaseSync(join(dir, "scan.db"));
      db.exec("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA temp_store=FILE; CREATE TABLE e (k BLOB PRIMARY KEY, v BLOB NOT NULL, d INTEGER NOT NULL) WITHOUT ROWID;");
      this.disk = { dir, db, insert: db.prepare("INSERT OR REPLACE INTO e (k, v, d) VALUES (?, ?, ?)"), lookup: db.prepare("SELECT v FROM e WHERE k = ?") };
    } catch (e) {
      rmSync(dir, { recursive: true, force: true });
      throw e;
    }
    const mem = this.mem!;
    this.mem = null;
    for (const [k, s] of mem.index) this.insert(k, mem.packed(s), mem.dir(s));
    this.commit();
  }

  private commit(): void {
    if (this.inBatch > 0) this.disk!.db.exec("COMMIT");
    this.inBatch = 0;
  }

  /** Every entry in key order, with its key split into path components. */
  *scan(): Generator<{ parts: string[]; entry: Entry }> {
    for (const { parts, packed } of this.scanPacked()) yield { parts, entry: decodeEntry(decode(packed, { useBigInt64: true }), "scan cache") };
  }

  /**
   * Every entry in key order as its packEntry() bytes, with whether it is a
   * directory that gets a tree (decoded only where needed: trees are built
   * from the bytes as they are).
   */
  *scanPacked(): Generator<{ parts: string[]; packed: Uint8Array; dir: boolean }> {
    if (this.mem) {
      const mem = this.mem;
      const keys = [...mem.index.keys()];
      // String order is UTF-8 byte order while no key has code units from 0xD800 up (surrogates, escaped bytes among them).
      if (this.wide) {
        const bytes = new Map(keys.map((k) => [k, nameToBytes(k)]));
        keys.sort((a, b) => Buffer.compare(bytes.get(a)!, bytes.get(b)!));
      } else keys.sort();
      for (const k of keys) {
        const s = mem.index.get(k)!;
        yield { parts: k === "" ? [] : k.split("\0"), packed: mem.packed(s), dir: mem.dir(s) };
      }
      return;
    }
    this.commit();
    // Rows as arrays, keys decoded in place: ~25% less of this thread's time at the end of a backup.
    const st = this.disk!.db.prepare("SELECT k, v, d FROM e ORDER BY k");
    st.setReturnArrays(true);
    for (const row of st.iterate() as Iterable<[Uint8Array, Uint8Array, number]>) {
      const kb = row[0];
      const k = nameFromBytes(kb);
      yield { parts: k === "" ? [] : k.split("\0"), packed: row[1], dir: row[2] === 1 };
    }
  }

  close(): void {
    this.mem = null;
    const d = this.disk;
    this.disk = null;
    if (!d) return;
    try {
      d.db.close();
    } finally {
      rmSync(d.dir, { recursive: true, force: true });
    }
  }
}
