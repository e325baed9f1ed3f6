/**
 * The scan cache: entries of a running backup, kept on disk (node:sqlite in
 * a temporary directory) so that importers may produce records in any order
 * and memory stays bounded whatever the tree size. Keys are the path's
 * components joined by a NUL byte, so a byte-order scan visits a directory,
 * then its whole subtree, then its next sibling.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DatabaseSync, type StatementSync } from "node:sqlite";
import { decode } from "@msgpack/msgpack";
import { decodeEntry, type Entry, isTreeDir, packEntry } from "./tree.js";

const BATCH = 2000;

export function pathKey(path: string): Buffer {
  const parts = path.split("/").filter((c) => c !== "");
  return Buffer.from(parts.join("\0"), "utf8");
}

export class ScanCache {
  private readonly dir: string;
  private readonly db: DatabaseSync;
  private readonly insert: StatementSync;
  private inBatch = 0;
  private readonly lookup: StatementSync;
  /** While frozen (a checkpoint is scanning), entries wait here. */
  private held: [string, Entry][] | null = null;

  constructor(parent = tmpdir()) {
    this.dir = mkdtempSync(join(parent, "coffer-scan-"));
    this.db = new DatabaseSync(join(this.dir, "scan.db"));
    this.db.exec("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA temp_store=FILE; CREATE TABLE e (k BLOB PRIMARY KEY, v BLOB NOT NULL, d INTEGER NOT NULL) WITHOUT ROWID;");
    this.insert = this.db.prepare("INSERT OR REPLACE INTO e (k, v, d) VALUES (?, ?, ?)");
    this.lookup = this.db.prepare("SELECT v FROM e WHERE k = ?");
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
    this.commit();
    const row = this.lookup.get(pathKey(path)) as { v: Uint8Array } | undefined;
    return row ? decodeEntry(decode(row.v, { useBigInt64: true }), "scan cache") : undefined;
  }

  put(path: string, entry: Entry): void {
    if (this.held) {
      this.held.push([path, entry]);
      return;
    }
    if (this.inBatch === 0) this.db.exec("BEGIN");
    this.insert.run(pathKey(path), packEntry(entry), isTreeDir(entry) ? 1 : 0);
    if (++this.inBatch >= BATCH) this.commit();
  }

  private commit(): void {
    if (this.inBatch > 0) this.db.exec("COMMIT");
    this.inBatch = 0;
  }

  /** Every entry in key order, with its key split into path components. */
  *scan(): Generator<{ parts: string[]; entry: Entry }> {
    this.commit();
    const it = this.db.prepare("SELECT k, v FROM e ORDER BY k").iterate() as Iterable<{ k: Uint8Array; v: Uint8Array }>;
    for (const row of it) {
      const k = Buffer.from(row.k).toString("utf8");
      yield { parts: k === "" ? [] : k.split("\0"), entry: decodeEntry(decode(row.v, { useBigInt64: true }), "scan cache") };
    }
  }

  /**
   * Every entry in key order as its packEntry() bytes, with whether it is a
   * directory that gets a tree (decoded only where needed: trees are built
   * from the bytes as they are).
   */
  *scanPacked(): Generator<{ parts: string[]; packed: Uint8Array; dir: boolean }> {
    this.commit();
    const it = this.db.prepare("SELECT k, v, d FROM e ORDER BY k").iterate() as Iterable<{ k: Uint8Array; v: Uint8Array; d: number }>;
    for (const row of it) {
      const k = Buffer.from(row.k).toString("utf8");
      yield { parts: k === "" ? [] : k.split("\0"), packed: row.v, dir: row.d === 1 };
    }
  }

  close(): void {
    try {
      this.db.close();
    } finally {
      rmSync(this.dir, { recursive: true, force: true });
    }
  }
}
