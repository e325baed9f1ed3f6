/**
 * The Repository API used by the snapshot layer: open/create, blob reads
 * (ranged reads, authenticated), blob writes (deduplicated, packed, with
 * the write order of docs/FORMAT.md: packfile, then the state delta naming
 * it), snapshot listing and locks.
 */
import { Resource, StoreMode } from "../connectors/flags.js";
import type { Store } from "../connectors/store.js";
import { CofferError, CorruptError, isCofferError, repositoryWriteError, throwIfAborted } from "../util/errors.js";
import { toHex } from "../util/hex.js";
import { giveBack, isLent, ownBytes } from "../util/ring.js";
import { mapLimit } from "../util/concurrency.js";
import { DEFAULT_CHUNKING } from "./chunker.js";
import { type BlobType, BlobType as BT, blobTypeName, Codec, type Compression, inPackfile } from "./codec.js";
import { type ChunkingParams, decodeConfig, encodeConfig, newConfig, type RepositoryConfig, unlock } from "./config.js";
import { deriveSubkeys, Mac, type MacAlgorithm, type Subkeys } from "./crypto.js";
import { acquireLock, type Lock, type LockKind } from "./locks.js";
import { type BlobEntry, PackWriter, readPack } from "./packfile.js";
import { StagedPack } from "./pack-sink.js";
import { type BlobLocation, blobKey, decodeDelta, encodeDelta, Index, type PackRecord } from "./state.js";

export interface CreateOptions {
  passphrase: string | null;
  mac?: MacAlgorithm;
  compression?: Compression;
  chunking?: ChunkingParams;
  packSize?: number;
  kdf?: { memory: number; passes: number; parallelism: number };
}

export interface OpenOptions {
  /** Called only when the repository is encrypted. */
  passphrase: () => Promise<string | null>;
  signal?: AbortSignal | undefined;
}

const UPLOADS_IN_FLIGHT = 2;
/** Bytes of a staged packfile waiting to be written before its writers wait (see append). */
const UNWRITTEN_MAX = 8 << 20;
/** Blobs up to this size are encoded on the calling thread by putBlob (see there). */
const SYNC_ENCODE_MAX = 64 << 10;
/** Runs of tree blobs kept (see readTree), and how far one reaches before and after the tree asked for. */
const TREE_RUNS = 4;
const TREE_RUN_BEFORE = 768 << 10;
const TREE_RUN_AFTER = 256 << 10;

export interface WriteStats {
  packs: number;
  packBytes: number;
  blobs: number;
  rawBytes: number;
}

export class Repository {
  readonly index = new Index();
  /** Blobs added to a pack not yet recorded in the state (dedup must see them). */
  private readonly pending = new Set<string>();
  private writer: PackWriter<StagedPack> | null = null;
  private readonly uploads = new Set<Promise<void>>();
  private uploadError: unknown = null;
  private lock: Lock | null = null;
  readonly written: WriteStats = { packs: 0, packBytes: 0, blobs: 0, rawBytes: 0 };

  private constructor(
    readonly store: Store,
    readonly config: RepositoryConfig,
    readonly keys: Subkeys,
    readonly mac: Mac,
    readonly codec: Codec,
  ) {}

  static async create(store: Store, o: CreateOptions): Promise<RepositoryConfig> {
    if (((await store.mode()) & StoreMode.WRITE) === 0) throw new CofferError("READ_ONLY", `store ${store.origin} is read-only`);
    const { config } = await newConfig({
      chunking: o.chunking ?? DEFAULT_CHUNKING,
      mac: o.mac ?? "blake3",
      compression: o.compression ?? "zstd",
      passphrase: o.passphrase,
      ...(o.packSize !== undefined ? { packSize: o.packSize } : {}),
      ...(o.kdf !== undefined ? { kdf: o.kdf } : {}),
    });
    await store.create(encodeConfig(config));
    return config;
  }

  static async open(store: Store, o: OpenOptions): Promise<Repository> {
    const config = decodeConfig(await store.open({ signal: o.signal }));
    const master = await unlock(config, config.encryption === null ? null : await o.passphrase());
    const keys = deriveSubkeys(master);
    const mac = await Mac.create(config.mac, keys.mac);
    const codec = new Codec({ keys, encrypted: config.encryption !== null, compression: config.compression });
    const repo = new Repository(store, config, keys, mac, codec);
    await repo.loadState(o.signal);
    return repo;
  }

  get id(): string {
    return toHex(this.config.id);
  }

  private async loadState(signal?: AbortSignal): Promise<void> {
    const names: Uint8Array[] = [];
    for await (const n of this.store.list(Resource.STATE, { signal })) names.push(n);
    await mapLimit(names, 8, async (name) => {
      for (const p of await this.readDelta(name, signal)) this.index.addPack(p);
    });
  }

  async readDelta(name: Uint8Array, signal?: AbortSignal): Promise<PackRecord[]> {
    const raw = await this.codec.decode(BT.STATE, name, await this.store.get(Resource.STATE, name, undefined, { signal }));
    if (Buffer.compare(this.mac.mac(raw), name) !== 0) throw new CorruptError(`state ${toHex(name)}`, "content does not match its name");
    return decodeDelta(raw, name);
  }

  /**
   * Indexes packfiles that no state delta names (left by a backup that was
   * killed between storing a packfile and its delta): each is read whole,
   * verified (name, footer, index, all authenticated) and recorded in a new
   * state delta, so its blobs are reused instead of uploaded again. A
   * packfile that does not verify is left alone. Returns how many were adopted.
   */
  async adoptUnindexedPacks(signal?: AbortSignal): Promise<number> {
    const orphans: Uint8Array[] = [];
    for await (const m of this.store.list(Resource.PACKFILE, { signal })) if (!this.index.packs.has(toHex(m))) orphans.push(m);
    let adopted = 0;
    for (const mac of orphans) {
      let entries: BlobEntry[];
      try {
        entries = await readPack(await this.store.get(Resource.PACKFILE, mac, undefined, { signal }), mac, this.codec, this.mac);
      } catch (e) {
        throwIfAborted(signal);
        if (isCofferError(e, "CORRUPT") || isCofferError(e, "NOT_FOUND")) continue;
        throw e;
      }
      await this.writeDelta({ mac, entries }, signal);
      adopted++;
    }
    return adopted;
  }

  private async writeDelta(pack: PackRecord, signal?: AbortSignal): Promise<void> {
    const delta = encodeDelta([pack]);
    const dmac = this.mac.mac(delta);
    await this.store.put(Resource.STATE, dmac, await this.codec.encode(BT.STATE, dmac, delta), { signal });
    this.index.addPack(pack);
  }

  // ---- locks ----

  /** `onWarning` hears of damaged locks removed on the way (locks.ts). */
  async acquire(kind: LockKind, command: string, onWarning?: (m: string) => void): Promise<void> {
    if (this.lock) return;
    this.lock = await acquireLock(this.store, this.codec, kind, command, onWarning);
  }

  /**
   * What a failed write to the store becomes: REPOSITORY_WRITE, naming the
   * repository (`repository full: ...` for ENOSPC), which stops a backup at
   * once instead of failing each entry after it as if it were unreadable.
   */
  private writeFailed(e: unknown): unknown {
    return repositoryWriteError(e, this.store.root);
  }

  async releaseLock(): Promise<void> {
    const l = this.lock;
    this.lock = null;
    await l?.release();
  }

  // ---- reads ----

  locate(type: BlobType, mac: Uint8Array): BlobLocation {
    const loc = this.index.get(type, mac);
    if (!loc) throw new CofferError("NOT_FOUND", `${blobTypeName(type)} blob ${toHex(mac)} is not in the repository index`, { type, mac: toHex(mac) });
    return loc;
  }

  /**
   * Reads, authenticates and decodes one blob with a ranged read. A tree
   * comes with the trees stored next to it (see treeRun).
   */
  async getBlob(type: BlobType, mac: Uint8Array, signal?: AbortSignal): Promise<Uint8Array> {
    const loc = this.locate(type, mac);
    let bytes: Uint8Array;
    try {
      bytes = type === BT.TREE ? await this.readTree(loc, signal) : await this.store.get(Resource.PACKFILE, loc.pack, { offset: loc.offset, length: loc.length }, { signal });
    } catch (e) {
      if (isCofferError(e, "NOT_FOUND")) {
        throw new CofferError("NOT_FOUND", `packfile ${toHex(loc.pack)} holding ${blobTypeName(type)} blob ${toHex(mac)} is missing`, { type, mac: toHex(mac) });
      }
      throw e;
    }
    try {
      return await this.codec.decode(type, mac, bytes);
    } catch (e) {
      throw inPackfile(e, loc.pack);
    }
  }

  /** Runs of tree blobs read at once, most recent last (see readTree). */
  private readonly treeRuns: { pack: Uint8Array; offset: number; end: number; bytes: Promise<Uint8Array> }[] = [];
  /** Per packfile, its tree blobs by offset (packfiles do not change). */
  private packTrees: Map<Uint8Array, BlobLocation[]> | null = null;

  /**
   * The stored bytes of the tree blob at `loc`, not yet authenticated (the
   * codec does that, blob by blob). Walking a snapshot reads its trees one
   * after another, and they were written together, children before their
   * directory: one read fetches the run of trees stored contiguously around
   * `loc` (mostly before it) and serves the next ones from memory. One read
   * per tree had cost a no-change backup of /usr/share 3,200 reads.
   */
  private readTree(loc: BlobLocation, signal?: AbortSignal): Promise<Uint8Array> {
    const slice = (run: { offset: number }, b: Uint8Array) => b.subarray(loc.offset - run.offset, loc.offset - run.offset + loc.length);
    for (const r of this.treeRuns) {
      if (r.pack === loc.pack && r.offset <= loc.offset && loc.offset + loc.length <= r.end) return r.bytes.then((b) => slice(r, b));
    }
    const [offset, end] = this.treeRun(loc);
    const run = { pack: loc.pack, offset, end, bytes: this.store.get(Resource.PACKFILE, loc.pack, { offset, length: end - offset }, { signal }) };
    if (end - offset > loc.length) {
      this.treeRuns.push(run);
      if (this.treeRuns.length > TREE_RUNS) this.treeRuns.shift();
      run.bytes.catch(() => {
        const i = this.treeRuns.indexOf(run);
        if (i >= 0) this.treeRuns.splice(i, 1); // a failed read is not kept
      });
    }
    return run.bytes.then((b) => slice(run, b));
  }

  /** The extent [offset, end) of the tree blobs stored contiguously around `loc`, at most TREE_RUN_BEFORE before it and TREE_RUN_AFTER after. */
  private treeRun(loc: BlobLocation): [number, number] {
    // The packfiles indexed when the first tree is read; trees of later ones are read one at a time.
    this.packTrees ??= this.index.locationsByPack(BT.TREE);
    const trees = this.packTrees.get(loc.pack) ?? [];
    let lo = 0, hi = trees.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (trees[mid]!.offset < loc.offset) lo = mid + 1;
      else hi = mid;
    }
    if (trees[lo]?.offset !== loc.offset) return [loc.offset, loc.offset + loc.length];
    let first = lo, last = lo;
    while (first > 0 && trees[first - 1]!.offset + trees[first - 1]!.length === trees[first]!.offset && loc.offset - trees[first - 1]!.offset <= TREE_RUN_BEFORE) first--;
    while (last + 1 < trees.length && trees[last]!.offset + trees[last]!.length === trees[last + 1]!.offset && trees[last + 1]!.offset + trees[last + 1]!.length - loc.offset <= TREE_RUN_AFTER) last++;
    return [trees[first]!.offset, trees[last]!.offset + trees[last]!.length];
  }

  // ---- writes ----

  has(type: BlobType, mac: Uint8Array): boolean {
    const k = blobKey(type, mac);
    return this.pending.has(k) || this.index.hasKey(k);
  }

  /**
   * Stores a blob unless the repository already has it. `mac` defaults to
   * the keyed MAC of `raw` (snapshot headers pass their random ID).
   * Returns the MAC and whether the blob was new.
   */
  async putBlob(type: BlobType, raw: Uint8Array, mac?: Uint8Array, signal?: AbortSignal): Promise<{ mac: Uint8Array; added: boolean }> {
    const m = mac ?? this.mac.mac(raw);
    const k = blobKey(type, m);
    if (this.pending.has(k) || this.index.hasKey(k)) return { mac: m, added: false };
    throwIfAborted(signal);
    if (this.uploadError) throw this.uploadError;
    // From here until it is in a pack, the key stays pending, so that
    // concurrent puts of the same blob do not store it twice.
    this.pending.add(k);
    let encoded: Uint8Array;
    try {
      // Small blobs (trees, headers, small files from a stream) are encoded
      // on this thread: a libuv round trip costs more than compressing them.
      encoded = raw.byteLength <= SYNC_ENCODE_MAX ? this.codec.encodeSync(type, m, raw) : await this.codec.encode(type, m, raw);
      throwIfAborted(signal);
      if (this.uploadError) throw this.uploadError;
    } catch (e) {
      this.pending.delete(k);
      throw e;
    }
    await this.append(type, m, raw.byteLength, encoded, signal);
    return { mac: m, added: true };
  }

  /**
   * Adds a blob that was already encoded (by a worker thread) under `mac`,
   * unless the repository has it. Returns whether it was added. `encoded`
   * may be lent (util/ring.ts): it is given back once written, copied or
   * not needed.
   */
  async addEncoded(type: BlobType, mac: Uint8Array, rawLength: number, encoded: Uint8Array, signal?: AbortSignal): Promise<boolean> {
    const k = blobKey(type, mac);
    if (this.pending.has(k) || this.index.hasKey(k)) {
      giveBack(encoded);
      return false;
    }
    if (signal?.aborted || this.uploadError) giveBack(encoded);
    throwIfAborted(signal);
    if (this.uploadError) throw this.uploadError;
    this.pending.add(k);
    await this.append(type, mac, rawLength, encoded, signal);
    return true;
  }

  /**
   * Appends an encoded blob (already marked pending) to the current
   * packfile. Stores that stage writes get the packfile as it fills (at most
   * UNWRITTEN_MAX bytes wait); others get it whole when it is sealed.
   */
  private async append(type: BlobType, mac: Uint8Array, rawLength: number, encoded: Uint8Array, signal?: AbortSignal): Promise<void> {
    const store = this.store;
    // A packfile that starts with a blob lent from a ring (a large file's) is
    // written bypassing the store's cache: see the fs store's direct writes.
    const w = (this.writer ??= new PackWriter(store.stage ? new StagedPack(store as Store & Required<Pick<Store, "stage">>, this.mac, signal, isLent(encoded)) : undefined));
    // A sink gives lent buffers back once written; a whole packfile held for put() holds copies.
    w.add(type, mac, rawLength, w.sink ? encoded : ownBytes(encoded));
    this.written.blobs++;
    this.written.rawBytes += rawLength;
    if (w.size >= this.config.packSize) await this.rotate(signal);
    else if (w.sink && (w.sink.pending > UNWRITTEN_MAX || w.sink.failed)) await this.drainWriter(w.sink);
  }

  private async drainWriter(sink: StagedPack): Promise<void> {
    try {
      await sink.drain(UNWRITTEN_MAX / 2);
    } catch (e) {
      // The blobs of this packfile are lost: no later write may rely on them.
      const f = this.writeFailed(e);
      this.uploadError ??= f;
      throw f;
    }
  }

  /**
   * Packfiles taken from the writer and not yet stored (or failed), from
   * the moment they are taken: sealing and waiting for an upload slot
   * included, which `uploads` does not cover.
   */
  private readonly packsInFlight = new Set<Promise<void>>();

  /** Seals the current packfile and uploads it (then its state delta) in the background. */
  private async rotate(signal?: AbortSignal): Promise<void> {
    const w = this.writer;
    if (!w || w.entries.length === 0) return;
    this.writer = null;
    // A snapshot may reference any blob added before it: its packfile waits
    // for every packfile taken earlier, and is not stored if one failed.
    const earlier = w.entries.some((e) => e.type === BT.SNAPSHOT) ? [...this.packsInFlight] : [];
    let settle!: () => void;
    const settled = new Promise<void>((r) => (settle = r)).then(() => {
      this.packsInFlight.delete(settled);
    });
    this.packsInFlight.add(settled);
    let sealed: Awaited<ReturnType<PackWriter["seal"]>>;
    try {
      while (this.uploads.size >= UPLOADS_IN_FLIGHT) await Promise.race(this.uploads);
      if (this.uploadError) throw this.uploadError;
      sealed = await w.seal(this.codec, this.mac);
    } catch (e) {
      // The blobs of this packfile are lost but still marked pending: no
      // later write may rely on them.
      const f = this.writeFailed(e);
      this.uploadError ??= f;
      await w.sink?.abort();
      settle();
      throw f;
    }
    const job = (async () => {
      try {
        await Promise.all(earlier);
        if (this.uploadError) throw this.uploadError;
        if (w.sink) await w.sink.commit(sealed.mac, signal);
        else await this.store.put(Resource.PACKFILE, sealed.mac, toIterable(sealed.parts), { signal });
      } catch (e) {
        await w.sink?.abort();
        throw e;
      }
      await this.writeDelta({ mac: sealed.mac, entries: w.entries }, signal);
      for (const e of w.entries) this.pending.delete(blobKey(e.type, e.mac));
      this.written.packs++;
      this.written.packBytes += sealed.size;
    })().catch((e: unknown) => {
      this.uploadError ??= this.writeFailed(e);
    });
    const tracked = job.finally(() => {
      this.uploads.delete(tracked);
      settle();
    });
    this.uploads.add(tracked);
  }

  /** Writes every pending blob: when it resolves, all of them are in the state. */
  async flush(signal?: AbortSignal): Promise<void> {
    await this.rotate(signal);
    while (this.packsInFlight.size > 0) await Promise.all(this.packsInFlight);
    if (this.uploadError) throw this.uploadError;
  }

  /**
   * Makes a snapshot visible: waits until every earlier packfile and its
   * state delta are stored, then writes the header and the last packfile,
   * whose state delta is the commit point.
   */
  async commitSnapshot(id: Uint8Array, header: Uint8Array, signal?: AbortSignal): Promise<void> {
    while (this.packsInFlight.size > 0) await Promise.all(this.packsInFlight);
    if (this.uploadError) throw this.uploadError;
    await this.putBlob(BT.SNAPSHOT, header, id, signal);
    await this.flush(signal);
    // Stores that buffer (a single-file archive) make it durable now.
    await this.store.sync?.({ signal }).catch((e: unknown) => {
      throw this.writeFailed(e);
    });
  }

  async close(): Promise<void> {
    // A packfile still being filled (its backup failed) is dropped.
    const w = this.writer;
    this.writer = null;
    await w?.sink?.abort();
    await Promise.all(this.packsInFlight);
    await this.releaseLock();
    await this.store.close();
  }

  /** Snapshot IDs in the index. */
  snapshotIds(): Uint8Array[] {
    return [...this.index.snapshots.values()];
  }
}

/** A packfile's parts as a stream of writes of about 1 MiB (a syscall per small blob costs more than a copy). */
async function* toIterable(parts: Uint8Array[]): AsyncGenerator<Uint8Array> {
  const WRITE = 1 << 20;
  let group: Uint8Array[] = [];
  let size = 0;
  for (const p of parts) {
    if (p.byteLength >= WRITE) {
      if (group.length > 0) yield group.length === 1 ? group[0]! : Buffer.concat(group, size);
      group = [];
      size = 0;
      yield p;
      continue;
    }
    group.push(p);
    size += p.byteLength;
    if (size >= WRITE) {
      yield Buffer.concat(group, size);
      group = [];
      size = 0;
    }
  }
  if (group.length > 0) yield group.length === 1 ? group[0]! : Buffer.concat(group, size);
}
