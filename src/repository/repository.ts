/**
 * The Repository API used by the snapshot layer: open/create, blob reads
 * (ranged reads, authenticated), blob writes (deduplicated, packed, with
 * the write order of docs/FORMAT.md: packfile, then the state delta naming
 * it), snapshot listing and locks.
 */
import { Resource, StoreMode } from "../connectors/flags.js";
import type { Store } from "../connectors/store.js";
import { CofferError, CorruptError, corruptDetail, isCofferError, repositoryWriteError, throwIfAborted } from "../util/errors.js";
import { toHex } from "../util/hex.js";
import { giveBack, isLent, ownBytes } from "../util/ring.js";
import { mapLimit } from "../util/concurrency.js";
import { DEFAULT_CHUNKING } from "./chunker.js";
import { type BlobType, BlobType as BT, blobTypeName, Codec, type Compression, inPackfile } from "./codec.js";
import { type ChunkingParams, decodeConfig, encodeConfig, newConfig, type Passphrase, type RepositoryConfig, unlock } from "./config.js";
import { deriveSubkeys, Mac, type MacAlgorithm, randomKey, type Subkeys } from "./crypto.js";
import { acquireLock, type Lock, type LockKind } from "./locks.js";
import { PackWriter, readPack } from "./packfile.js";
import { StagedPack } from "./pack-sink.js";
import { type BlobLocation, blobKey, type DamageRecord, decodeDelta, emptyDelta, encodeDelta, Index, type PackRecord, type RemovalRecord, type StateDelta, type VerifiedRecord } from "./state.js";

export interface CreateOptions {
  /** Bytes (a string stands for its UTF-8); null for a plaintext repository. */
  passphrase: Passphrase | null;
  mac?: MacAlgorithm;
  compression?: Compression;
  chunking?: ChunkingParams;
  packSize?: number;
  kdf?: { memory: number; passes: number; parallelism: number };
}

export interface OpenOptions {
  /** Called only when the repository is encrypted. */
  passphrase: () => Promise<Passphrase | null>;
  /**
   * Called with the decoded configuration before anything else is done with
   * it (no passphrase asked yet): throws to refuse it (the CLI refuses a
   * plaintext configuration where it expects an encrypted one).
   */
  checkConfig?: ((config: RepositoryConfig) => void | Promise<void>) | undefined;
  signal?: AbortSignal | undefined;
  /** Told of damage worked around while opening (a state delta that fails authentication). */
  onWarning?: ((message: string) => void) | undefined;
}

/** A state delta that could not be used, and why. */
export interface StateDamage {
  name: Uint8Array;
  message: string;
}

/** What reconcilePacks() found and did. */
export interface PackReconciliation {
  /** Packfiles no state delta named, now named by one. */
  adopted: number;
  /** Packfiles the state names that the store no longer has (recorded as damaged). */
  missing: string[];
}

const UPLOADS_IN_FLIGHT = 2;
/** Random bytes before the index of a plaintext repository's packfiles (docs/FORMAT.md, "Packfiles"). */
const PLAINTEXT_PADDING = 16;
/** Bytes of a staged packfile waiting to be written before its writers wait (see append). */
const UNWRITTEN_MAX = 8 << 20;
/** Blobs up to this size are encoded on the calling thread by putBlob (see there). */
const SYNC_ENCODE_MAX = 64 << 10;
/**
 * Runs of tree blobs kept (see readTree: enough for the parent listings a
 * backup loads ahead, backup/parent-prefetch.ts), and how far one reaches
 * before and after the tree asked for.
 */
const TREE_RUNS = 12;
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
  /** State deltas that failed authentication or decoding when the state was loaded. */
  readonly stateDamage: StateDamage[] = [];
  /** Packfiles indexed from their own index because a state delta was unusable (not yet named by a good delta). */
  private readonly recovered: PackRecord[] = [];
  /** Damage found by this process and not yet recorded in the state. */
  private readonly unrecorded: DamageRecord[] = [];
  /** Records to store with the state delta of the next packfile holding a snapshot (see commitSnapshot). */
  private commitRecords: Partial<StateDelta> | null = null;
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
    await o.checkConfig?.(config);
    const master = await unlock(config, config.encryption === null ? null : await o.passphrase());
    const keys = deriveSubkeys(master);
    const mac = await Mac.create(config.mac, keys.mac);
    const codec = new Codec({ keys, encrypted: config.encryption !== null, compression: config.compression });
    const repo = new Repository(store, config, keys, mac, codec);
    await repo.loadState(o.signal, o.onWarning);
    return repo;
  }

  get id(): string {
    return toHex(this.config.id);
  }

  /**
   * Builds the index from every state delta. A delta that fails
   * authentication is set aside (stateDamage) and the packfiles that no
   * usable delta names are indexed from their own authenticated indexes, so
   * that one damaged delta never makes the repository unusable.
   */
  private async loadState(signal?: AbortSignal, onWarning?: (m: string) => void): Promise<void> {
    await this.loadNewDeltas(signal);
    if (this.stateDamage.length === 0) return;
    const { verified, failed } = await this.scanUnindexed(signal);
    for (const p of verified) this.index.addPack(p);
    this.recovered.push(...verified);
    for (const d of this.stateDamage) onWarning?.(`${d.message}: ignored; run \`coffer repair index\``);
    if (verified.length > 0) onWarning?.(`indexed ${verified.length} packfiles from their own indexes instead`);
    for (const f of failed) onWarning?.(`${f.message}: not indexed`);
  }

  /** The state deltas read or written by this process (hex), with the packfiles each names and whether it holds nothing else. */
  readonly deltas = new Map<string, { name: Uint8Array; packs: string[]; onlyPacks: boolean }>();

  /** Reads and applies the state deltas in the store that this process has not read yet. */
  private async loadNewDeltas(signal?: AbortSignal): Promise<void> {
    const names: Uint8Array[] = [];
    for await (const n of this.store.list(Resource.STATE, { signal })) if (!this.deltas.has(toHex(n))) names.push(n);
    await mapLimit(names, 8, async (name) => {
      let delta: StateDelta;
      try {
        delta = await this.readDelta(name, signal);
      } catch (e) {
        throwIfAborted(signal);
        if (isCofferError(e, "NOT_FOUND")) return; // removed since it was listed (by `repair index`)
        if (!isCofferError(e, "CORRUPT")) throw e;
        if (!this.stateDamage.some((d) => Buffer.compare(d.name, name) === 0)) this.stateDamage.push({ name, message: `state delta ${toHex(name)}: ${corruptDetail(e)}` });
        return;
      }
      this.noteDelta(name, delta);
      this.index.apply(delta);
    });
  }

  private noteDelta(name: Uint8Array, d: Partial<StateDelta>): void {
    const records = Object.entries(d).some(([k, v]) => k !== "packs" && Array.isArray(v) && v.length > 0);
    this.deltas.set(toHex(name), { name, packs: (d.packs ?? []).map((p) => toHex(p.mac)), onlyPacks: !records });
  }

  /**
   * Applies the state deltas stored since the state was loaded. A lock
   * holder does so once its lock is stored, so that its view of the state
   * holds every record stored before its lock (docs/FORMAT.md, "Garbage
   * collection"); `maintenance` again once the backups it waits for ended.
   */
  async refreshState(signal?: AbortSignal): Promise<void> {
    await this.loadNewDeltas(signal);
  }

  async readDelta(name: Uint8Array, signal?: AbortSignal): Promise<StateDelta> {
    const raw = await this.codec.decode(BT.STATE, name, await this.store.get(Resource.STATE, name, undefined, { signal }));
    if (Buffer.compare(this.mac.mac(raw), name) !== 0) throw new CorruptError(`state ${toHex(name)}`, "content does not match its name");
    return decodeDelta(raw, name);
  }

  /**
   * The stored packfiles that no state delta names (and `repair index` did
   * not drop), each read whole and verified: name, footer and index, all
   * authenticated. Those that do not verify come back as `failed`.
   */
  async scanUnindexed(signal?: AbortSignal, stored?: readonly Uint8Array[]): Promise<{ verified: PackRecord[]; failed: { mac: Uint8Array; message: string }[] }> {
    const orphans: Uint8Array[] = [];
    for await (const m of stored ?? this.store.list(Resource.PACKFILE, { signal })) {
      const hex = toHex(m);
      if (!this.index.packs.has(hex) && !this.index.dropped.has(hex) && !this.index.deleted.has(hex)) orphans.push(m);
    }
    const verified: PackRecord[] = [];
    const failed: { mac: Uint8Array; message: string }[] = [];
    for (const mac of orphans) {
      try {
        verified.push({ mac, entries: await readPack(await this.store.get(Resource.PACKFILE, mac, undefined, { signal }), mac, this.codec, this.mac) });
      } catch (e) {
        throwIfAborted(signal);
        if (isCofferError(e, "CORRUPT") || isCofferError(e, "NOT_FOUND")) failed.push({ mac, message: (e as Error).message });
        else throw e;
      }
    }
    return { verified, failed };
  }

  /**
   * Brings the state in line with the store before a backup: packfiles no
   * state delta names (left by a backup killed between storing a packfile
   * and its delta, or named only by a damaged delta) are verified and
   * recorded in new state deltas, so their blobs are reused instead of
   * uploaded again; packfiles the state names that the store no longer has
   * are recorded as damaged, so their blobs are stored again.
   */
  async reconcilePacks(signal?: AbortSignal): Promise<PackReconciliation> {
    const listed: Uint8Array[] = [];
    for await (const m of this.store.list(Resource.PACKFILE, { signal })) listed.push(m);
    const stored = new Set(listed.map(toHex));
    const missing: string[] = [];
    for (const [hex, mac] of this.index.packs) {
      if (stored.has(hex) || this.index.damaged.get(hex)?.keys === null) continue;
      missing.push(hex);
      this.noteDamage({ pack: mac, blobs: null, why: `packfile ${hex} is missing from the store`, timeMs: Date.now() });
    }
    const { verified } = await this.scanUnindexed(signal, listed);
    const adopt = [...this.recovered.splice(0), ...verified];
    for (const p of adopt) await this.writeDelta({ packs: [p] }, signal);
    await this.recordDamage(signal);
    return { adopted: adopt.length, missing };
  }

  /** Names (hex) of the state deltas this process stored. */
  readonly deltasWritten = new Set<string>();

  /** Stores a state delta and applies it to the index. */
  async writeDelta(delta: Partial<StateDelta>, signal?: AbortSignal): Promise<Uint8Array> {
    const raw = encodeDelta(delta);
    const dmac = this.mac.mac(raw);
    await this.store.put(Resource.STATE, dmac, await this.codec.encode(BT.STATE, dmac, raw), { signal });
    this.deltasWritten.add(toHex(dmac));
    this.noteDelta(dmac, delta);
    this.index.apply({ ...emptyDelta(), ...delta });
    return dmac;
  }

  /**
   * Stops using blobs found damaged or missing (a backup then stores them
   * again) and remembers the finding for recordDamage().
   */
  noteDamage(r: DamageRecord): void {
    this.index.markDamaged(r);
    this.unrecorded.push(r);
  }

  /** How many findings noteDamage() has that recordDamage() has not stored yet. */
  get unrecordedDamage(): number {
    return this.unrecorded.length;
  }

  /** Records in the state the damage noted so far (one delta), so that later runs stop using those blobs too. */
  async recordDamage(signal?: AbortSignal): Promise<number> {
    const damaged = this.unrecorded.splice(0);
    if (damaged.length > 0) await this.writeDelta({ damaged }, signal);
    return damaged.length;
  }

  /** Records the packfiles a check found intact (one delta for them all), so that later checks, here or elsewhere, read others first. */
  async recordVerified(verified: VerifiedRecord[], signal?: AbortSignal): Promise<void> {
    if (verified.length > 0) await this.writeDelta({ verified }, signal);
  }

  /** Hides snapshots on purpose: their absence is then expected (docs/FORMAT.md, "State"). */
  async removeSnapshots(removed: RemovalRecord[], signal?: AbortSignal): Promise<void> {
    if (removed.length > 0) await this.writeDelta({ removed }, signal);
  }

  // ---- locks ----

  /** `onWarning` hears of damaged locks removed on the way (locks.ts). */
  async acquire(kind: LockKind, command: string, onWarning?: (m: string) => void, signal?: AbortSignal): Promise<void> {
    if (this.lock) return;
    this.lock = await acquireLock(this.store, this.codec, kind, command, onWarning);
    // What was stored before the lock (marks of `maintenance`, above all) is part of what this holder sees.
    await this.refreshState(signal);
  }

  /**
   * Fails with READ_ONLY, naming `command`, when the store's credentials may
   * not delete (append-only): `command` removes or deletes, and must fail
   * before it changes anything rather than on its first delete.
   */
  async requireDeleteRights(command: string, signal?: AbortSignal): Promise<void> {
    try {
      await this.store.checkDeleteRights?.({ signal });
    } catch (e) {
      if (!isCofferError(e, "READ_ONLY")) throw e;
      throw new CofferError("READ_ONLY", `${command} needs delete rights on the repository, which these credentials lack: ${e.message}; run it with credentials that may delete`, e.data, { cause: e });
    }
  }

  /** The name of the lock this process holds, if any. */
  get lockName(): Uint8Array | undefined {
    return this.lock?.name;
  }

  /**
   * What a failed write to the store becomes: REPOSITORY_WRITE, naming the
   * repository (`repository full: ...` for ENOSPC), which stops a backup at
   * once instead of failing each entry after it as if it were unreadable.
   */
  private writeFailed(e: unknown): unknown {
    return repositoryWriteError(e, this.store.root);
  }

  /** Deletes an object of the store: false when it was gone already (deleted by a run that was then killed). */
  async deleteObject(resource: Resource, name: Uint8Array, signal?: AbortSignal): Promise<boolean> {
    try {
      await this.store.delete(resource, name, { signal });
      return true;
    } catch (e) {
      if (!isCofferError(e, "NOT_FOUND")) throw e;
      return false;
    }
  }

  async releaseLock(): Promise<void> {
    const l = this.lock;
    this.lock = null;
    await l?.release();
  }

  // ---- reads ----

  locate(type: BlobType, mac: Uint8Array): BlobLocation {
    const loc = this.index.get(type, mac);
    if (!loc) {
      const lost = this.index.lostReason(type, mac);
      if (lost !== undefined) throw new CorruptError(`${blobTypeName(type)} blob ${toHex(mac)}`, `damaged or missing (${lost})`, { type, mac: toHex(mac) });
      throw new CofferError("NOT_FOUND", `${blobTypeName(type)} blob ${toHex(mac)} is not in the repository index`, { type, mac: toHex(mac) });
    }
    return loc;
  }

  /**
   * Reads, authenticates and decodes one blob with a ranged read. A tree
   * comes with the trees stored next to it (see treeRun).
   */
  async getBlob(type: BlobType, mac: Uint8Array, signal?: AbortSignal): Promise<Uint8Array> {
    const { loc, bytes } = await this.readStoredBlob(type, mac, signal);
    return this.decodeBlob(type, mac, loc, bytes);
  }

  /**
   * The stored bytes of one blob and where they lie, not yet authenticated
   * (getBlob decodes them; restore's workers decode them on their thread).
   * A packfile gone from the store is noted as damage, and a copy of the
   * blob elsewhere serves instead.
   */
  async readStoredBlob(type: BlobType, mac: Uint8Array, signal?: AbortSignal): Promise<{ loc: BlobLocation; bytes: Uint8Array }> {
    const loc = this.locate(type, mac);
    try {
      const bytes = type === BT.TREE ? await this.readTree(loc, signal) : await this.store.get(Resource.PACKFILE, loc.pack, { offset: loc.offset, length: loc.length }, { signal });
      return { loc, bytes };
    } catch (e) {
      if (isCofferError(e, "NOT_FOUND")) {
        this.noteDamage({ pack: loc.pack, blobs: null, why: `packfile ${toHex(loc.pack)} is missing from the store`, timeMs: Date.now() });
        // A copy elsewhere (a packfile `maintenance` repacked, then deleted since this process read the state) serves instead.
        if (this.index.has(type, mac)) return this.readStoredBlob(type, mac, signal);
        throw new CofferError("NOT_FOUND", `packfile ${toHex(loc.pack)} holding ${blobTypeName(type)} blob ${toHex(mac)} is missing`, { type, mac: toHex(mac) });
      }
      throw e;
    }
  }

  /**
   * Authenticates and decodes the stored bytes of the blob at `loc`; a blob
   * that fails is noted as damaged and its CorruptError names its packfile.
   */
  async decodeBlob(type: BlobType, mac: Uint8Array, loc: BlobLocation, bytes: Uint8Array): Promise<Uint8Array> {
    try {
      return await this.codec.decode(type, mac, bytes);
    } catch (e) {
      if (!isCofferError(e, "CORRUPT")) throw e;
      const what = `${blobTypeName(type)} blob ${toHex(mac)} in packfile ${toHex(loc.pack)}`;
      this.noteDamage({ pack: loc.pack, blobs: [{ type, mac }], why: `${what}: ${corruptDetail(e)}`, timeMs: Date.now() });
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
   * `loc` (mostly before it) and serves the next ones from memory: one read
   * per tree had made a no-change backup wait on thousands of them.
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
    return this.pending.has(k) || this.index.offersKey(k);
  }

  /**
   * Stores a blob unless the repository already has it. `mac` defaults to
   * the keyed MAC of `raw` (snapshot headers pass their random ID).
   * Returns the MAC and whether the blob was new.
   */
  async putBlob(type: BlobType, raw: Uint8Array, mac?: Uint8Array, signal?: AbortSignal): Promise<{ mac: Uint8Array; added: boolean }> {
    const m = mac ?? this.mac.mac(raw);
    const k = blobKey(type, m);
    if (this.pending.has(k) || this.index.offersKey(k)) return { mac: m, added: false };
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
    if (this.pending.has(k) || this.index.offersKey(k)) {
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
      // A plaintext repository's packfiles could repeat one another byte for byte (its blobs
      // carry no random IV): 16 random bytes make each name new, as garbage collection needs.
      sealed = await w.seal(this.codec, this.mac, this.config.encryption === null ? randomKey(PLAINTEXT_PADDING) : undefined);
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
      const records = w.entries.some((e) => e.type === BT.SNAPSHOT) ? this.takeCommitRecords() : {};
      await this.writeDelta({ ...records, packs: [{ mac: sealed.mac, entries: w.entries }] }, signal);
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
  async commitSnapshot(id: Uint8Array, header: Uint8Array, signal?: AbortSignal, o: { removes?: RemovalRecord[] } = {}): Promise<void> {
    while (this.packsInFlight.size > 0) await Promise.all(this.packsInFlight);
    if (this.uploadError) throw this.uploadError;
    // Removals committed with the snapshot (`repair snapshots` replacing one) become visible with it, atomically.
    if (o.removes?.length) this.commitRecords = { removed: o.removes };
    await this.putBlob(BT.SNAPSHOT, header, id, signal);
    await this.flush(signal);
    // Stores that buffer (a single-file archive) make it durable now.
    await this.store.sync?.({ signal }).catch((e: unknown) => {
      throw this.writeFailed(e);
    });
  }

  private takeCommitRecords(): Partial<StateDelta> {
    const r = this.commitRecords ?? {};
    this.commitRecords = null;
    return r;
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
