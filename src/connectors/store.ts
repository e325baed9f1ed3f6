/**
 * The Store contract (Kloset's storage.Store; its place among the layers:
 * docs/ARCHITECTURE.md, "Layers"; over the plugin wire: docs/WIRE.md, "Store").
 * A store keeps opaque objects of three resources, each named by a 32-byte
 * MAC, plus one configuration blob written by create() and read by open().
 * It knows nothing of encryption or formats: the repository layer
 * authenticates every byte it gets back.
 *
 * Rules every implementation follows (test/conformance/store.ts checks them):
 * - put() is atomic: a reader sees the whole object or none of it, never a
 *   partial one, even if the process dies mid-write. Putting an existing MAC
 *   replaces it (same name, same content in practice); a write-once store
 *   (s3: it never overwrites) keeps the object there instead, but for locks,
 *   which every store replaces (a holder rewrites its lock to refresh it).
 * - get() of a missing object rejects with NotFoundError; a range past the
 *   end rejects too (a short read is never returned silently).
 * - list() yields every MAC of a resource once, in no particular order.
 * - delete() of a missing object rejects with NotFoundError.
 * - A store opened read-only reports mode() without StoreMode.WRITE, and
 *   put()/delete() reject with code READ_ONLY before touching anything.
 * - Every call takes an optional AbortSignal and rejects with code
 *   INTERRUPTED once it is aborted.
 * - replaceConfig(), where a store has it, is atomic as put() is, and
 *   replaces only the configuration it was told it replaces.
 */
import type { Resource } from "./flags.js";

export type Mac = Uint8Array;

export interface CallOptions {
  signal?: AbortSignal | undefined;
}

export interface StageOptions extends CallOptions {
  /**
   * A hint that the object is large, written once in order and not read
   * back soon: a store may bypass its cache for it (the fs store writes it
   * with O_DIRECT where the file system allows). Stores may ignore it.
   */
  direct?: boolean | undefined;
}

export interface Range {
  offset: number;
  length: number;
}

export interface Store {
  /** Where the store is (e.g. a directory), its protocol, and its root. */
  readonly origin: string;
  readonly type: string;
  readonly root: string;
  readonly flags: number;
  /**
   * Optional: how many reads the store serves well at once (its
   * `connections` parameter for s3 and sftp). Planned reads of restore and
   * `check` keep that many in flight; stores without it get a default.
   */
  readonly connections?: number | undefined;

  /** Initialise an empty store with the repository's config blob; fails with REPOSITORY_EXISTS if one is there. */
  create(config: Uint8Array, opts?: CallOptions): Promise<void>;
  /** Read the config blob; fails with NO_REPOSITORY when there is none. */
  open(opts?: CallOptions): Promise<Uint8Array>;
  ping(opts?: CallOptions): Promise<void>;
  /** StoreMode bits (READ, WRITE). */
  mode(opts?: CallOptions): Promise<number>;
  /** Total bytes stored, or -1 if unknown. */
  size(opts?: CallOptions): Promise<number>;

  list(resource: Resource, opts?: CallOptions): AsyncIterable<Mac>;
  /** Store an object atomically; returns the number of bytes written. */
  put(resource: Resource, mac: Mac, data: Uint8Array | AsyncIterable<Uint8Array>, opts?: CallOptions): Promise<number>;
  get(resource: Resource, mac: Mac, range?: Range, opts?: CallOptions): Promise<Uint8Array>;
  delete(resource: Resource, mac: Mac, opts?: CallOptions): Promise<void>;
  /**
   * Stores that buffer writes (a single-file archive) make every put and
   * delete so far durable and visible to other processes, atomically. The
   * repository calls it after committing a snapshot or a checkpoint and
   * close() implies it. Stores that write through need not implement it.
   */
  sync?(opts?: CallOptions): Promise<void>;
  close(): Promise<void>;
  /**
   * Optional: a put whose name is known only at the end (a packfile is named
   * by the MAC of all its bytes). The bytes are written as they come, so the
   * writer need not hold them; commit() then makes the object visible under
   * its name, atomically, with the same guarantees as put(), and abort()
   * leaves nothing behind. Stores without it get the whole object by put().
   */
  stage?(resource: Resource, opts?: StageOptions): Promise<StagedPut>;
  /**
   * Where an object lives on this machine's filesystem, for stores that keep
   * objects as plain files (LOCALFS): readers may then read it directly
   * (e.g. from worker threads). Undefined for other stores.
   */
  localPath?(resource: Resource, mac: Mac): string;
  /**
   * Optional: replaces the configuration blob with `config`, atomically (a
   * reader sees the old blob or the new one, whatever happens to the
   * writer), if it still is `expected`; rejects with LOCKED, replacing
   * nothing, if another writer replaced it meanwhile. Only `coffer key`
   * calls it (docs/FORMAT.md, "Replacing the configuration"); a store
   * without it cannot change a repository's keys.
   */
  replaceConfig?(config: Uint8Array, expected: Uint8Array, opts?: CallOptions): Promise<void>;
  /**
   * Optional: rejects with READ_ONLY, deleting nothing, when the store's
   * credentials may put but not delete (an append-only key, docs/CLI.md).
   * Commands that delete or remove call it before they change anything;
   * stores whose rights cannot differ so need not implement it.
   */
  checkDeleteRights?(opts?: CallOptions): Promise<void>;
}

/** An object being written by Store.stage(): write() in order, then commit() or abort(), once. */
export interface StagedPut {
  /** Appends the buffers, in order (they may be released once it resolves). */
  write(parts: readonly Uint8Array[]): Promise<void>;
  /** Makes the bytes written the object `mac` of the staged resource; returns their number. */
  commit(mac: Mac, opts?: CallOptions): Promise<number>;
  /** Drops what was written (no-op after commit). */
  abort(): Promise<void>;
}
