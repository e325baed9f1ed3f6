/**
 * Snapshot trees built by hand for the walks of src/snapshot (diff,
 * locate): entries with chosen metadata and chunk lists, directories
 * encoded as TREE blobs held by a recording repository whose getBlob()
 * counts each read, so a test can tell which trees a walk opened.
 */
import { createHash } from "node:crypto";
import type { EntryKind, FileInfo } from "../../src/connectors/records.js";
import { BlobType } from "../../src/repository/codec.js";
import { compareNames, type Entry, encodeTree } from "../../src/snapshot/tree.js";
import { CofferError } from "../../src/util/errors.js";
import { toHex } from "../../src/util/hex.js";

const mac = (bytes: Uint8Array | string) => new Uint8Array(createHash("sha256").update(bytes).digest());

/** TREE blobs by MAC (hex), with a log of the reads: getBlob() as Repository's, for trees only. */
export class RecordingTrees {
  private readonly trees = new Map<string, Uint8Array>();
  /** MACs (hex) of the TREE blobs read, in order. */
  readonly reads: string[] = [];

  async getBlob(type: BlobType, m: Uint8Array): Promise<Uint8Array> {
    const k = toHex(m);
    const raw = this.trees.get(k);
    if (type !== BlobType.TREE || !raw) throw new CofferError("NOT_FOUND", `blob ${k} is not in the repository index`);
    this.reads.push(k);
    return raw;
  }

  /** How often the tree of directory `d` was read. */
  readsOf(d: Entry): number {
    return this.reads.filter((k) => k === toHex(d.tree!)).length;
  }

  /** A directory entry whose TREE blob (children sorted by name bytes) is stored here. */
  dir(name: string, children: Entry[], info: Partial<FileInfo> = {}): Entry {
    const sorted = [...children].sort((a, b) => compareNames(a.name, b.name));
    const raw = encodeTree(sorted);
    const tree = mac(raw);
    this.trees.set(toHex(tree), raw);
    return { name, info: fileInfo(name, "dir", { size: 0, ...info }), tree };
  }
}

/** Stat fields for a test entry: fixed values, `over` replacing any of them. */
function fileInfo(name: string, kind: EntryKind, over: Partial<FileInfo> = {}): FileInfo {
  return { name, kind, size: 0, mode: 0o644, mtimeNs: 1_000_000_000n, ctimeNs: 1_000_000_000n, dev: 1n, ino: 7n, uid: 1000, gid: 1000, nlink: 1, ...over };
}

/** A regular file whose content is `pieces`, one chunk each (MAC: SHA-256 of the piece); size is their total unless given. */
export function file(name: string, pieces: string[], info: Partial<FileInfo> = {}, more: Partial<Entry> = {}): Entry {
  const chunks = pieces.map((p) => ({ mac: mac(`chunk:${p}`), length: Buffer.byteLength(p) }));
  const size = chunks.reduce((n, c) => n + c.length, 0);
  return { name, info: fileInfo(name, "file", { size, ...info }), chunks, ...more };
}

export function symlink(name: string, target: string, info: Partial<FileInfo> = {}): Entry {
  return { name, info: fileInfo(name, "symlink", { size: Buffer.byteLength(target), ...info }), target };
}

export function special(name: string, kind: EntryKind, info: Partial<FileInfo> = {}): Entry {
  return { name, info: fileInfo(name, kind, info) };
}
