/**
 * Looks inside a repository on disk for tests that damage it on purpose:
 * where a blob is stored (packfile file, offset, length), which packfiles
 * hold a file's content, and byte flips. Opens the repository read-only
 * through the library (the CLI is what the tests exercise).
 */
import { promises as fsp } from "node:fs";
import * as path from "node:path";
import { Resource } from "../../src/connectors/flags.js";
import { FsStore } from "../../src/connectors/fs/store.js";
import { BlobType } from "../../src/repository/codec.js";
import { Repository } from "../../src/repository/repository.js";
import { decodeHeader } from "../../src/snapshot/header.js";
import { TreeReader } from "../../src/snapshot/tree-reader.js";
import { toHex } from "../../src/util/hex.js";

export interface StoredBlob {
  /** The packfile's path on disk. */
  file: string;
  pack: string;
  offset: number;
  length: number;
}

/** The fs store's path of a packfile or state delta (docs/FORMAT.md, "Store layout"). */
export function objectPath(repo: string, dir: "packfiles" | "states", hex: string): string {
  return path.join(repo, dir, hex.slice(0, 2), hex);
}

async function withInspection<T>(repo: string, passphrase: string, fn: (r: Repository) => Promise<T>): Promise<T> {
  const r = await Repository.open(new FsStore(repo, { readOnly: true }), { passphrase: async () => passphrase });
  try {
    return await fn(r);
  } finally {
    await r.close();
  }
}

function stored(repo: string, r: Repository, type: BlobType, mac: Uint8Array): StoredBlob {
  const loc = r.locate(type, mac);
  const pack = toHex(loc.pack);
  return { file: objectPath(repo, "packfiles", pack), pack, offset: loc.offset, length: loc.length };
}

/** Where the header of the snapshot whose ID starts with `id` is stored. */
export function headerBlob(repo: string, passphrase: string, id: string): Promise<StoredBlob> {
  return withInspection(repo, passphrase, async (r) => {
    const full = r.snapshotIds().find((s) => toHex(s).startsWith(id));
    if (!full) throw new Error(`no snapshot ${id}`);
    return stored(repo, r, BlobType.SNAPSHOT, full);
  });
}

/** Where each chunk of the file at `file` (a path in the snapshot) is stored. */
export function fileChunks(repo: string, passphrase: string, id: string, file: string): Promise<StoredBlob[]> {
  return withInspection(repo, passphrase, async (r) => {
    const full = r.snapshotIds().find((s) => toHex(s).startsWith(id))!;
    const h = decodeHeader(await r.getBlob(BlobType.SNAPSHOT, full), full);
    const e = await new TreeReader(r).lookup(h.root, file);
    if (!e?.chunks) throw new Error(`${file}: no content in snapshot ${id}`);
    return e.chunks.map((c) => stored(repo, r, BlobType.CHUNK, c.mac));
  });
}

/** Flips one bit of the byte at `at`. */
export async function flipByte(file: string, at: number): Promise<void> {
  const fh = await fsp.open(file, "r+");
  try {
    const b = Buffer.alloc(1);
    await fh.read(b, 0, 1, at);
    b[0] = b[0]! ^ 0x04;
    await fh.write(b, 0, 1, at);
  } finally {
    await fh.close();
  }
}

/** Every file below `dir` with its bytes, for asserting that nothing changed. */
export async function snapshotOfFiles(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const walk = async (d: string) => {
    for (const e of await fsp.readdir(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else if (e.isFile()) out.set(path.relative(dir, p), (await fsp.readFile(p)).toString("base64"));
    }
  };
  await walk(dir);
  return out;
}

/** The state deltas (hex names) that name packfile `pack`. */
export function deltasNaming(repo: string, passphrase: string, pack: string): Promise<string[]> {
  return withInspection(repo, passphrase, async (r) => {
    const out: string[] = [];
    for await (const name of r.store.list(Resource.STATE)) {
      if ((await r.readDelta(name)).packs.some((p) => toHex(p.mac) === pack)) out.push(toHex(name));
    }
    return out;
  });
}

/** Where the listing (tree blob) of directory `dir` of a snapshot is stored. */
export function treeBlob(repo: string, passphrase: string, id: string, dir: string): Promise<StoredBlob> {
  return withInspection(repo, passphrase, async (r) => {
    const full = r.snapshotIds().find((s) => toHex(s).startsWith(id))!;
    const h = decodeHeader(await r.getBlob(BlobType.SNAPSHOT, full), full);
    const e = dir === "/" ? h.root : await new TreeReader(r).lookup(h.root, dir);
    if (!e?.tree) throw new Error(`${dir}: not a directory in snapshot ${id}`);
    return stored(repo, r, BlobType.TREE, e.tree);
  });
}
