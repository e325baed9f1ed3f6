/**
 * The single-file Store (type "ptar"): a whole repository in one archive
 * file (docs/FORMAT.md, "Single-file repositories (ptar)").
 *
 *   header (16) | object bytes ... | index | config blob | trailer (104)
 *
 * The file under its final name is only ever replaced by rename(2) of a
 * complete, fsynced archive, so it is always the previous version or the new
 * one, whatever happens to the writer. A write session works on a temp copy
 * in the same directory (`.NAME.<pid>.<random>.tmp`): at its first put or
 * delete the current archive is copied (reflinked where the filesystem can),
 * its index and trailer cut off, and new objects are appended to it while
 * the index is kept in memory. sync() and close() commit: under the sidecar
 * lock `NAME.lock` they merge whatever another writer committed meanwhile,
 * write the index, config and trailer, fsync, rename over the final name and
 * fsync the directory. The next write starts a new session.
 *
 * What a store sees: the archive as it was when first read (or at the start
 * of its current write session, or its last commit, or open()), plus its own
 * uncommitted writes. Other processes see a store's writes once it commits.
 *
 * LOCK objects are never written to the file: they live in this process's
 * memory, shared by every PtarStore on the same path in the process. Locks
 * between processes are only the sidecar lock, held around each commit.
 */
import { createHash, randomBytes } from "node:crypto";
import { constants as fsConstants, promises as fsp } from "node:fs";
import type { FileHandle } from "node:fs/promises";
import { hostname } from "node:os";
import * as path from "node:path";
import { abortError, CofferError, CorruptError, NotFoundError, throwIfAborted } from "../util/errors.js";
import { fromHex, toHex } from "../util/hex.js";
import { LocationFlag, Resource, resourceName, StoreMode } from "./flags.js";
import type { CallOptions, Mac, Range, Store } from "./store.js";

export interface PtarStoreOptions {
  /** Open for reading only: put(), delete() and create() reject with READ_ONLY; nothing is ever written. */
  readOnly?: boolean | undefined;
  /** How long a commit waits for another process's commit lock before failing with LOCKED (default 60 s). */
  lockWaitMs?: number | undefined;
}

// --- format constants (docs/FORMAT.md) ---
const HEADER_MAGIC = Buffer.from("COFFPTAR", "latin1");
const TRAILER_MAGIC = Buffer.from("COFFPEND", "latin1");
const VERSION = 1;
const HEADER_SIZE = 16;
const TRAILER_SIZE = 104;
/** Offset of the checksum inside the trailer: it covers every trailer byte before it. */
const TRAILER_SUM_AT = 72;
const ENTRY_SIZE = 49;
const MAC_BYTES = 32;
const LINEAGE_BYTES = 16;
const MAX_OFFSET = BigInt(Number.MAX_SAFE_INTEGER);

// --- behaviour ---
/** Session temp files older than this belong to a dead writer and are removed by the next writer session. */
const STALE_TMP_MS = 60 * 60 * 1000;
/** A live session refreshes its temp file's mtime this often, so it never looks stale. */
const TMP_TOUCH_MS = 10 * 60 * 1000;
/** A commit lock not refreshed for this long is stale (its holder is gone or hung). */
const LOCK_STALE_MS = 3 * 60 * 1000;
const LOCK_TOUCH_MS = 20 * 1000;
const LOCK_WAIT_MS = 60 * 1000;
/** Compact at commit when dead bytes are more than half of the data region and at least this much. */
const COMPACT_MIN_DEAD = 4 * 1024 * 1024;
const READ_CHUNK = 8 * 1024 * 1024;
const COPY_CHUNK = 4 * 1024 * 1024;

interface Entry {
  offset: number;
  length: number;
}

/** Object key: the resource digit, then the MAC in lower-case hex (so keys sort as (resource, mac)). */
type Index = Map<string, Entry>;

/** A parsed, validated archive. */
interface Archive {
  size: number;
  generation: bigint;
  lineage: Buffer;
  /** End of the data region = where the index starts. */
  dataEnd: number;
  index: Index;
  config: Uint8Array;
}

/** What a store reads from: a committed archive, or its session temp. */
interface View {
  handle: Handle;
  index: Index;
  config: Uint8Array;
  /** The committed archive this view is based on. */
  base: { size: number; generation: bigint; lineage: Buffer; dataEnd: number };
  /** Identity of the committed file when the view is not a session (to notice a newer version). */
  file?: { dev: number; ino: number; size: number } | undefined;
}

interface Session {
  tmp: string;
  handle: Handle;
  /** End of the data written so far: the next object goes here. */
  tail: number;
  /** Keys put and deleted since the base: what a merge keeps of ours. */
  added: Set<string>;
  deleted: Set<string>;
  dirty: boolean;
  timer: NodeJS.Timeout;
}

/** State shared by every copy of this module in the process (e.g. src and dist both loaded). */
interface ProcessState {
  /** LOCK objects per archive path. */
  locks: Map<string, Map<string, Uint8Array>>;
  /** Serialises commits of stores of this process on one archive. */
  commitMutexes: Map<string, Mutex>;
  /** Nonces of the commit lock files this process holds. */
  heldLocks: Set<string>;
}

const processState: ProcessState = (() => {
  const g = globalThis as unknown as Record<symbol, ProcessState | undefined>;
  const key = Symbol.for("coffer.ptar-store.process-state.v1");
  g[key] ??= { locks: new Map(), commitMutexes: new Map(), heldLocks: new Set() };
  return g[key];
})();

export class PtarStore implements Store {
  readonly origin: string;
  readonly type = "ptar";
  /** Absolute path of the archive file. */
  readonly root: string;
  readonly flags = LocationFlag.FILE;
  readonly #readOnly: boolean;
  readonly #lockWaitMs: number;
  readonly #dir: string;
  readonly #name: string;
  /** Serialises loads, session starts, puts (appends), deletes and commits of this store. */
  readonly #mutex = new Mutex();
  #view: View | undefined;
  #session: Session | undefined;
  #sweptTemps = false;

  constructor(file: string, opts: PtarStoreOptions = {}) {
    this.root = path.resolve(file);
    this.origin = hostname() || this.root;
    this.#readOnly = opts.readOnly === true;
    this.#lockWaitMs = opts.lockWaitMs ?? LOCK_WAIT_MS;
    this.#dir = path.dirname(this.root);
    this.#name = path.basename(this.root);
  }

  /** The sidecar commit lock. */
  get lockPath(): string {
    return `${this.root}.lock`;
  }

  async create(config: Uint8Array, opts: CallOptions = {}): Promise<void> {
    const { signal } = opts;
    throwIfAborted(signal);
    this.#checkWritable("create");
    await io("mkdir", this.#dir, signal, () => fsp.mkdir(this.#dir, { recursive: true }));
    const existing = await fsp.lstat(this.root).catch((e: unknown) => {
      if (errno(e) === "ENOENT") return undefined;
      throw toStoreError(e, "stat", this.root, signal);
    });
    if (existing !== undefined && !(existing.isFile() && existing.size === 0)) {
      if (existing.isDirectory()) throw new CofferError("IO", `[ptar] ${this.root} is a directory`, { path: this.root });
      throw await this.#inTheWay(existing.isFile());
    }
    throwIfAborted(signal);
    const tmp = this.#tempName();
    const fh = await io("create", tmp, signal, () => fsp.open(tmp, "wx+"));
    try {
      await writeAt(fh, headerBytes(), 0, tmp);
      await writeTail(fh, tmp, HEADER_SIZE, new Map(), config, 1n, randomBytes(LINEAGE_BYTES));
      await io("close", tmp, signal, () => fh.close());
      throwIfAborted(signal);
      // link() refuses to replace: of two concurrent creates only one wins.
      await fsp.link(tmp, this.root).catch(async (e: unknown) => {
        const code = errno(e);
        if (code === "EEXIST") {
          const st = await fsp.lstat(this.root).catch(() => undefined);
          if (!(st?.isFile() && st.size === 0)) throw await this.#inTheWay(st?.isFile() ?? false);
        } else if (!["EPERM", "ENOTSUP", "EOPNOTSUPP", "ENOSYS", "EXDEV"].includes(code ?? "")) {
          throw e;
        }
        await fsp.rename(tmp, this.root);
      });
    } catch (e) {
      await fh.close().catch(() => undefined);
      throw toStoreError(e, "write", this.root, signal);
    } finally {
      await fsp.rm(tmp, { force: true }).catch(() => undefined);
    }
    await fsyncDir(this.#dir);
  }

  async open(opts: CallOptions = {}): Promise<Uint8Array> {
    const { signal } = opts;
    throwIfAborted(signal);
    const release = await this.#mutex.lock(signal);
    try {
      if (this.#session === undefined && this.#view !== undefined && !(await this.#viewIsCurrent(signal))) {
        this.#setView(undefined);
      }
      const view = await this.#loadLocked(signal);
      throwIfAborted(signal);
      return view.config.slice();
    } finally {
      release();
    }
  }

  async ping(opts: CallOptions = {}): Promise<void> {
    const { signal } = opts;
    throwIfAborted(signal);
    let st;
    try {
      st = await fsp.stat(this.root);
    } catch (e) {
      const code = errno(e);
      if (code === "ENOENT" || code === "ENOTDIR") throw this.#noRepository();
      throw toStoreError(e, "stat", this.root, signal);
    }
    if (!st.isFile()) throw new CofferError("IO", `[ptar] ${this.root}: not a file`, { path: this.root });
    throwIfAborted(signal);
  }

  async mode(opts: CallOptions = {}): Promise<number> {
    throwIfAborted(opts.signal);
    return this.#readOnly ? StoreMode.READ : StoreMode.READ | StoreMode.WRITE;
  }

  /**
   * The size the archive has once committed: the committed file's size, or,
   * during a write session, what a commit would write now (old and new
   * object bytes, index, config, trailer; before any merge or compaction).
   */
  async size(opts: CallOptions = {}): Promise<number> {
    const { signal } = opts;
    throwIfAborted(signal);
    let view = await this.#loaded(signal);
    throwIfAborted(signal);
    view = this.#view ?? view; // a session may have started meanwhile
    const s = this.#session;
    if (s === undefined) return view.base.size;
    return s.tail + view.index.size * ENTRY_SIZE + view.config.byteLength + TRAILER_SIZE;
  }

  async *list(resource: Resource, opts: CallOptions = {}): AsyncIterable<Mac> {
    const { signal } = opts;
    throwIfAborted(signal);
    checkResource(resource);
    let names: string[];
    if (resource === Resource.LOCK) {
      names = [...this.#locks().keys()];
    } else {
      const view = await this.#loaded(signal);
      const prefix = String(resource);
      names = [];
      for (const key of view.index.keys()) if (key[0] === prefix) names.push(key.slice(1)); // a snapshot
    }
    for (const name of names) {
      throwIfAborted(signal);
      yield fromHex(name);
    }
  }

  async put(
    resource: Resource,
    mac: Mac,
    data: Uint8Array | AsyncIterable<Uint8Array>,
    opts: CallOptions = {},
  ): Promise<number> {
    const { signal } = opts;
    throwIfAborted(signal);
    this.#checkWritable("put");
    const key = objectKey(resource, mac);
    if (resource === Resource.LOCK) {
      const stored = await collect(data, signal);
      throwIfAborted(signal);
      this.#locks().set(key.slice(1), stored);
      return stored.byteLength;
    }
    const release = await this.#mutex.lock(signal);
    try {
      const s = this.#session ?? (await this.#startSession(signal));
      const fh = s.handle.fh;
      const start = s.tail;
      let size = 0;
      try {
        if (data instanceof Uint8Array) {
          await writeAt(fh, data, start, s.tmp);
          size = data.byteLength;
        } else {
          for await (const piece of data) {
            throwIfAborted(signal);
            await writeAt(fh, piece, start + size, s.tmp);
            size += piece.byteLength;
          }
        }
        throwIfAborted(signal);
      } catch (e) {
        // Nothing points past the tail: the partial bytes are overwritten by the next put.
        throw signal?.aborted ? abortError(signal) : e; // a source's own error passes through unchanged
      }
      s.tail = start + size;
      this.#view!.index.set(key, { offset: start, length: size });
      s.added.add(key);
      s.deleted.delete(key);
      s.dirty = true;
      return size;
    } finally {
      release();
    }
  }

  async get(resource: Resource, mac: Mac, range?: Range, opts: CallOptions = {}): Promise<Uint8Array> {
    const { signal } = opts;
    throwIfAborted(signal);
    if (range !== undefined) checkRange(range);
    const key = objectKey(resource, mac);
    const what = `${resourceName(resource)} ${key.slice(1)}`;
    const data = { resource, mac: key.slice(1) };
    if (resource === Resource.LOCK) {
      const stored = this.#locks().get(key.slice(1));
      if (stored === undefined) throw new NotFoundError(what, data);
      return slice(stored, range, what, data);
    }
    // Read the view synchronously after the await: a view replaced meanwhile has its handle retired.
    let view = this.#view;
    while (view === undefined) {
      await this.#loaded(signal);
      view = this.#view;
    }
    const entry = view.index.get(key);
    if (entry === undefined) throw new NotFoundError(what, data);
    const offset = range?.offset ?? 0;
    const length = range?.length ?? entry.length;
    if (offset + length > entry.length) {
      throw new CorruptError(what, `range ${offset}+${length} past the end (${entry.length} bytes)`, {
        ...data,
        size: entry.length,
      });
    }
    const handle = view.handle;
    handle.users++;
    try {
      const out = new Uint8Array(length);
      let done = 0;
      while (done < length) {
        throwIfAborted(signal);
        const want = Math.min(READ_CHUNK, length - done);
        const at = entry.offset + offset + done;
        const { bytesRead } = await io("read", handle.path, signal, () => handle.fh.read(out, done, want, at));
        if (bytesRead === 0) throw new CorruptError(this.root, `short read of ${what} at ${at}`, { path: this.root });
        done += bytesRead;
      }
      return out;
    } finally {
      handle.release();
    }
  }

  async delete(resource: Resource, mac: Mac, opts: CallOptions = {}): Promise<void> {
    const { signal } = opts;
    throwIfAborted(signal);
    this.#checkWritable("delete");
    const key = objectKey(resource, mac);
    const notFound = () => new NotFoundError(`${resourceName(resource)} ${key.slice(1)}`, { resource, mac: key.slice(1) });
    if (resource === Resource.LOCK) {
      const locks = this.#locks();
      if (!locks.delete(key.slice(1))) throw notFound();
      if (locks.size === 0) processState.locks.delete(this.root);
      return;
    }
    const release = await this.#mutex.lock(signal);
    try {
      // No session (and no temp file) for a delete that fails.
      if (!(await this.#loadLocked(signal)).index.has(key)) throw notFound();
      const s = this.#session ?? (await this.#startSession(signal));
      const view = this.#view!;
      if (!view.index.has(key)) throw notFound(); // gone in the newer archive the session started from
      throwIfAborted(signal);
      view.index.delete(key);
      s.added.delete(key);
      s.deleted.add(key);
      s.dirty = true;
    } finally {
      release();
    }
  }

  /** Commits every put and delete so far (see the file comment); a no-op without changes. */
  async sync(opts: CallOptions = {}): Promise<void> {
    const { signal } = opts;
    throwIfAborted(signal);
    const release = await this.#mutex.lock(signal);
    try {
      await this.#commit(signal);
    } finally {
      release();
    }
  }

  /** Commits pending changes, removes the session temp, closes the read handles. Throws if the commit fails (the archive is then unchanged). */
  async close(): Promise<void> {
    const release = await this.#mutex.lock();
    let failure: unknown;
    try {
      await this.#commit(undefined);
    } catch (e) {
      failure = e;
    } finally {
      await this.#endSession();
      this.#setView(undefined);
      release();
    }
    if (failure !== undefined) throw failure;
  }

  // --- views and sessions ---

  async #loaded(signal?: AbortSignal): Promise<View> {
    if (this.#view !== undefined) return this.#view;
    const release = await this.#mutex.lock(signal);
    try {
      return await this.#loadLocked(signal);
    } finally {
      release();
    }
  }

  /** The current view, reading the committed archive if there is none. Holds the mutex. */
  async #loadLocked(signal?: AbortSignal): Promise<View> {
    if (this.#view !== undefined) return this.#view;
    let fh: FileHandle;
    try {
      fh = await fsp.open(this.root, fsConstants.O_RDONLY);
    } catch (e) {
      const code = errno(e);
      if (code === "ENOENT" || code === "ENOTDIR") throw this.#noRepository();
      throw toStoreError(e, "open", this.root, signal);
    }
    try {
      const st = await io("stat", this.root, signal, () => fh.stat());
      if (!st.isFile()) throw new CorruptError(this.root, "not a ptar archive (not a regular file)", { path: this.root });
      const archive = await readArchive(fh, st.size, this.root);
      throwIfAborted(signal);
      const view: View = {
        handle: new Handle(fh, this.root),
        index: archive.index,
        config: archive.config,
        base: baseOf(archive),
        file: { dev: st.dev, ino: st.ino, size: st.size },
      };
      this.#setView(view);
      return view;
    } catch (e) {
      await fh.close().catch(() => undefined);
      throw toStoreError(e, "read", this.root, signal);
    }
  }

  /** Whether the file under the final name is still the one the view read. */
  async #viewIsCurrent(signal?: AbortSignal): Promise<boolean> {
    const file = this.#view?.file;
    if (file === undefined) return true;
    try {
      const st = await fsp.stat(this.root);
      return st.dev === file.dev && st.ino === file.ino && st.size === file.size;
    } catch (e) {
      if (errno(e) === "ENOENT" || errno(e) === "ENOTDIR") return false;
      throw toStoreError(e, "stat", this.root, signal);
    }
  }

  #setView(view: View | undefined): void {
    const old = this.#view;
    this.#view = view;
    if (old !== undefined && old.handle !== view?.handle) old.handle.retire();
  }

  /**
   * Starts a write session: copies the current archive to a temp file, reads
   * and checks it there (so the base is exactly what was copied, whatever
   * other writers do meanwhile), cuts off its index and trailer. Holds the mutex.
   */
  async #startSession(signal?: AbortSignal): Promise<Session> {
    if (!this.#sweptTemps) {
      this.#sweptTemps = true;
      await this.#removeStaleTemps();
    }
    throwIfAborted(signal);
    const tmp = this.#tempName();
    try {
      await fsp.copyFile(this.root, tmp, fsConstants.COPYFILE_EXCL | fsConstants.COPYFILE_FICLONE);
    } catch (e) {
      await fsp.rm(tmp, { force: true }).catch(() => undefined);
      const code = errno(e);
      if (code === "ENOENT" || code === "ENOTDIR") throw this.#noRepository();
      throw toStoreError(e, "copy", this.root, signal);
    }
    let fh: FileHandle | undefined;
    try {
      fh = await fsp.open(tmp, "r+");
      const st = await fh.stat();
      const archive = await readArchive(fh, st.size, this.root);
      await fh.truncate(archive.dataEnd);
      throwIfAborted(signal);
      const handle = new Handle(fh, tmp);
      const timer = setInterval(() => {
        const now = new Date();
        void fsp.utimes(tmp, now, now).catch(() => undefined);
      }, TMP_TOUCH_MS);
      timer.unref();
      const session: Session = {
        tmp,
        handle,
        tail: archive.dataEnd,
        added: new Set(),
        deleted: new Set(),
        dirty: false,
        timer,
      };
      this.#session = session;
      this.#setView({ handle, index: archive.index, config: archive.config, base: baseOf(archive) });
      return session;
    } catch (e) {
      await fh?.close().catch(() => undefined);
      await fsp.rm(tmp, { force: true }).catch(() => undefined);
      throw toStoreError(e, "read", tmp, signal);
    }
  }

  /** Drops the session and its temp file (after a commit the temp is gone already). Holds the mutex. */
  async #endSession(): Promise<void> {
    const s = this.#session;
    if (s === undefined) return;
    this.#session = undefined;
    clearInterval(s.timer);
    if (this.#view?.handle === s.handle) this.#setView(undefined);
    else s.handle.retire();
    await fsp.rm(s.tmp, { force: true }).catch(() => undefined);
  }

  /**
   * Commits the session (see the file comment). On failure the archive under
   * the final name is unchanged and the session is kept as it was, so a later
   * sync() or close() can try again. Holds the mutex.
   */
  async #commit(signal: AbortSignal | undefined): Promise<void> {
    const s = this.#session;
    if (s === undefined || !s.dirty) return;
    const view = this.#view!;
    const unlock = await this.#lockCommit(signal);
    let disk: { fh: FileHandle; archive: Archive } | undefined;
    let compacted: { fh: FileHandle; tmp: string; index: Index; tail: number } | undefined;
    try {
      // What is under the final name now?
      disk = await this.#openCommitted(signal);
      let index = view.index;
      let tail = s.tail;
      let generation = view.base.generation + 1n;
      let lineage = view.base.lineage;
      let config = view.config;
      const theirs = disk.archive;
      if (theirs.generation !== view.base.generation || theirs.size !== view.base.size) {
        // Another writer committed since our base: keep what it did, apply our puts and deletes on top.
        ({ index, tail } = await this.#merge(s, view, disk.fh, theirs, signal));
        generation = (theirs.generation > view.base.generation ? theirs.generation : view.base.generation) + 1n;
        lineage = randomBytes(LINEAGE_BYTES);
        config = theirs.config;
      }
      let target = { fh: s.handle.fh, tmp: s.tmp };
      let live = 0;
      for (const e of index.values()) live += e.length;
      const dead = tail - HEADER_SIZE - live;
      if (dead >= COMPACT_MIN_DEAD && dead * 2 > tail - HEADER_SIZE) {
        compacted = await this.#compact(s.handle.fh, index, signal);
        ({ index, tail } = compacted);
        target = compacted;
        lineage = randomBytes(LINEAGE_BYTES);
      }
      throwIfAborted(signal);
      const size = await writeTail(target.fh, target.tmp, tail, index, config, generation, lineage);
      await unlock.verify();
      await io("rename", this.root, signal, () => fsp.rename(target.tmp, this.root));
      // Committed: from here nothing undoes it.
      await fsyncDir(this.#dir).catch(() => undefined);
      clearInterval(s.timer);
      this.#session = undefined;
      let handle = s.handle;
      if (compacted !== undefined) {
        handle = new Handle(compacted.fh, this.root);
        compacted = undefined;
        s.handle.retire();
        await fsp.rm(s.tmp, { force: true }).catch(() => undefined);
      } else {
        handle.path = this.root;
      }
      const st = await handle.fh.stat().catch(() => undefined);
      this.#setView({
        handle,
        index,
        config,
        base: { size, generation, lineage, dataEnd: tail },
        file: st && { dev: st.dev, ino: st.ino, size: st.size },
      });
    } catch (e) {
      // Bytes past the session's tail are garbage: cut them off (best effort; the next commit overwrites them anyway).
      if (this.#session === s) await s.handle.fh.truncate(s.tail).catch(() => undefined);
      throw toStoreError(e, "commit", this.root, signal);
    } finally {
      if (compacted !== undefined) {
        await compacted.fh.close().catch(() => undefined);
        await fsp.rm(compacted.tmp, { force: true }).catch(() => undefined);
      }
      await disk?.fh.close().catch(() => undefined);
      await unlock.release();
    }
  }

  async #openCommitted(signal?: AbortSignal): Promise<{ fh: FileHandle; archive: Archive }> {
    let fh: FileHandle;
    try {
      fh = await fsp.open(this.root, fsConstants.O_RDONLY);
    } catch (e) {
      const code = errno(e);
      if (code === "ENOENT" || code === "ENOTDIR") {
        throw new CofferError("NO_REPOSITORY", `[ptar] ${this.root} was removed during the write session`, {
          root: this.root,
        });
      }
      throw toStoreError(e, "open", this.root, signal);
    }
    try {
      const st = await fh.stat();
      if (!st.isFile()) throw new CorruptError(this.root, "not a ptar archive (not a regular file)", { path: this.root });
      return { fh, archive: await readArchive(fh, st.size, this.root) };
    } catch (e) {
      await fh.close().catch(() => undefined);
      throw toStoreError(e, "read", this.root, signal);
    }
  }

  /**
   * Their index, then our puts, minus our deletes. Their objects that our
   * temp lacks are appended to it; when their data region extends our base's
   * (same lineage), objects inside our base's region are already there at
   * the same offsets.
   */
  async #merge(
    s: Session,
    view: View,
    theirsFh: FileHandle,
    theirs: Archive,
    signal?: AbortSignal,
  ): Promise<{ index: Index; tail: number }> {
    const shared =
      theirs.lineage.equals(view.base.lineage) && theirs.dataEnd >= view.base.dataEnd ? view.base.dataEnd : HEADER_SIZE;
    const index: Index = new Map();
    let tail = s.tail;
    const buf = Buffer.allocUnsafe(COPY_CHUNK);
    const theirsSorted = [...theirs.index].sort((a, b) => a[1].offset - b[1].offset);
    for (const [key, e] of theirsSorted) {
      if (s.added.has(key) || s.deleted.has(key)) continue;
      if (e.offset + e.length <= shared) {
        index.set(key, e);
        continue;
      }
      throwIfAborted(signal);
      await copyRange(theirsFh, this.root, e.offset, s.handle.fh, s.tmp, tail, e.length, buf);
      index.set(key, { offset: tail, length: e.length });
      tail += e.length;
    }
    for (const key of s.added) {
      const e = view.index.get(key);
      if (e !== undefined) index.set(key, e);
    }
    return { index, tail };
  }

  /** Copies the live objects into a fresh temp file, in offset order. */
  async #compact(src: FileHandle, index: Index, signal?: AbortSignal): Promise<{ fh: FileHandle; tmp: string; index: Index; tail: number }> {
    const tmp = this.#tempName();
    const fh = await io("create", tmp, signal, () => fsp.open(tmp, "wx+"));
    try {
      await writeAt(fh, headerBytes(), 0, tmp);
      const out: Index = new Map();
      let tail = HEADER_SIZE;
      const buf = Buffer.allocUnsafe(COPY_CHUNK);
      for (const [key, e] of [...index].sort((a, b) => a[1].offset - b[1].offset)) {
        throwIfAborted(signal);
        await copyRange(src, this.root, e.offset, fh, tmp, tail, e.length, buf);
        out.set(key, { offset: tail, length: e.length });
        tail += e.length;
      }
      return { fh, tmp, index: out, tail };
    } catch (e) {
      await fh.close().catch(() => undefined);
      await fsp.rm(tmp, { force: true }).catch(() => undefined);
      throw e;
    }
  }

  /** The commit lock: this process's mutex for the path, then the sidecar lock file. */
  async #lockCommit(signal?: AbortSignal): Promise<{ verify: () => Promise<void>; release: () => Promise<void> }> {
    let mutex = processState.commitMutexes.get(this.root);
    if (mutex === undefined) {
      mutex = new Mutex();
      processState.commitMutexes.set(this.root, mutex);
    }
    const releaseMutex = await mutex.lock(signal);
    try {
      const file = await acquireFileLock(this.lockPath, this.#tempName(), this.root, this.#lockWaitMs, signal);
      return {
        verify: () => file.verify(),
        release: async () => {
          await file.release();
          releaseMutex();
        },
      };
    } catch (e) {
      releaseMutex();
      throw e;
    }
  }

  /** Removes session temps of this archive left by writers that died more than an hour ago. */
  async #removeStaleTemps(): Promise<void> {
    const entries = await fsp.readdir(this.#dir).catch(() => [] as string[]);
    const cutoff = Date.now() - STALE_TMP_MS;
    const prefix = `.${this.#name}.`;
    for (const name of entries) {
      if (!name.startsWith(prefix) || !name.endsWith(".tmp")) continue;
      const p = path.join(this.#dir, name);
      const st = await fsp.lstat(p).catch(() => undefined);
      if (st?.isFile() && st.mtimeMs < cutoff) await fsp.rm(p, { force: true }).catch(() => undefined);
    }
  }

  #tempName(): string {
    return path.join(this.#dir, `.${this.#name}.${process.pid}.${randomBytes(8).toString("hex")}.tmp`);
  }

  #locks(): Map<string, Uint8Array> {
    let locks = processState.locks.get(this.root);
    if (locks === undefined) {
      locks = new Map();
      processState.locks.set(this.root, locks);
    }
    return locks;
  }

  #checkWritable(op: string): void {
    if (this.#readOnly) {
      throw new CofferError("READ_ONLY", `[ptar] ${this.root} is read-only: ${op} refused`, { root: this.root });
    }
  }

  /** Why create() refuses what is at the path: an archive (REPOSITORY_EXISTS), or anything else that is not an empty file (NOT_EMPTY). */
  async #inTheWay(isFile: boolean): Promise<CofferError> {
    if (isFile) {
      const head = Buffer.alloc(HEADER_MAGIC.byteLength);
      const fh = await fsp.open(this.root, "r").catch(() => undefined);
      const n = fh ? await fh.read(head, 0, head.byteLength, 0).then((r) => r.bytesRead, () => 0) : 0;
      await fh?.close().catch(() => undefined);
      if (n === head.byteLength && head.equals(HEADER_MAGIC)) return this.#exists();
    }
    return new CofferError("NOT_EMPTY", `cannot create a repository at ${this.root}: the file exists and is not empty (and is not a coffer archive); give a new or empty file`, {
      root: this.root,
    });
  }

  #exists(): CofferError {
    return new CofferError("REPOSITORY_EXISTS", `a repository already exists at ${this.root}`, { root: this.root });
  }

  #noRepository(): CofferError {
    return new CofferError("NO_REPOSITORY", `no repository at ${this.root}`, { root: this.root });
  }
}

// --- archive encoding ---

function headerBytes(): Buffer {
  const h = Buffer.alloc(HEADER_SIZE);
  HEADER_MAGIC.copy(h, 0);
  h.writeUInt32LE(VERSION, 8);
  h.writeUInt32LE(0, 12);
  return h;
}

function baseOf(a: Archive): View["base"] {
  return { size: a.size, generation: a.generation, lineage: a.lineage, dataEnd: a.dataEnd };
}

/**
 * Writes index, config and trailer at `dataEnd`, cuts the file there and
 * fsyncs it. Returns the archive's size.
 */
async function writeTail(
  fh: FileHandle,
  file: string,
  dataEnd: number,
  index: Index,
  config: Uint8Array,
  generation: bigint,
  lineage: Buffer,
): Promise<number> {
  const keys = [...index.keys()].sort();
  const idx = Buffer.alloc(keys.length * ENTRY_SIZE);
  let at = 0;
  for (const key of keys) {
    const e = index.get(key)!;
    idx.writeUInt8(Number(key[0]), at);
    idx.write(key.slice(1), at + 1, MAC_BYTES, "hex");
    idx.writeBigUInt64LE(BigInt(e.offset), at + 33);
    idx.writeBigUInt64LE(BigInt(e.length), at + 41);
    at += ENTRY_SIZE;
  }
  const configOffset = dataEnd + idx.byteLength;
  const t = Buffer.alloc(TRAILER_SIZE);
  TRAILER_MAGIC.copy(t, 0);
  t.writeUInt32LE(VERSION, 8);
  t.writeUInt32LE(0, 12);
  t.writeBigUInt64LE(generation, 16);
  lineage.copy(t, 24, 0, LINEAGE_BYTES);
  t.writeBigUInt64LE(BigInt(dataEnd), 40);
  t.writeBigUInt64LE(BigInt(keys.length), 48);
  t.writeBigUInt64LE(BigInt(configOffset), 56);
  t.writeBigUInt64LE(BigInt(config.byteLength), 64);
  const sum = createHash("sha256")
    .update(headerBytes())
    .update(idx)
    .update(config)
    .update(t.subarray(0, TRAILER_SUM_AT))
    .digest();
  sum.copy(t, TRAILER_SUM_AT);
  const tail = Buffer.concat([idx, config, t]);
  await writeAt(fh, tail, dataEnd, file);
  const size = dataEnd + tail.byteLength;
  await io("truncate", file, undefined, () => fh.truncate(size));
  await io("fsync", file, undefined, () => fh.sync());
  return size;
}

/** Reads and checks an archive's header, trailer, index and config; never trusts an offset before checking it. */
async function readArchive(fh: FileHandle, size: number, file: string): Promise<Archive> {
  const corrupt = (detail: string) => new CorruptError(file, detail, { path: file });
  if (size < HEADER_SIZE) throw corrupt(`not a ptar archive (${size} bytes)`);
  const header = await readExactly(fh, 0, HEADER_SIZE, file);
  if (!header.subarray(0, 8).equals(HEADER_MAGIC)) throw corrupt("not a ptar archive (bad magic)");
  const version = header.readUInt32LE(8);
  if (version !== VERSION) {
    throw new CofferError("UNSUPPORTED", `${file}: ptar version ${version} is not supported (this coffer reads ${VERSION})`, {
      path: file,
      version,
    });
  }
  if (size < HEADER_SIZE + TRAILER_SIZE) throw corrupt(`truncated ptar archive (${size} bytes, no room for a trailer)`);
  const t = await readExactly(fh, size - TRAILER_SIZE, TRAILER_SIZE, file);
  if (!t.subarray(0, 8).equals(TRAILER_MAGIC)) throw corrupt("no ptar trailer at the end: truncated or damaged");
  const indexOffsetB = t.readBigUInt64LE(40);
  const countB = t.readBigUInt64LE(48);
  const configOffsetB = t.readBigUInt64LE(56);
  const configLengthB = t.readBigUInt64LE(64);
  const end = BigInt(size - TRAILER_SIZE);
  if (
    indexOffsetB < BigInt(HEADER_SIZE) ||
    indexOffsetB > end ||
    countB > end ||
    indexOffsetB + countB * BigInt(ENTRY_SIZE) !== configOffsetB ||
    configLengthB > end ||
    configOffsetB + configLengthB !== end ||
    end > MAX_OFFSET
  ) {
    throw corrupt("trailer offsets do not fit the file: truncated or damaged");
  }
  const indexOffset = Number(indexOffsetB);
  const count = Number(countB);
  const configOffset = Number(configOffsetB);
  // Check the sum before trusting the lengths enough to allocate them.
  const hash = createHash("sha256").update(header);
  const buf = Buffer.allocUnsafe(Math.min(COPY_CHUNK, size - TRAILER_SIZE - indexOffset));
  for (let at = indexOffset; at < size - TRAILER_SIZE; ) {
    const n = Math.min(buf.byteLength, size - TRAILER_SIZE - at);
    await readInto(fh, buf, n, at, file);
    hash.update(buf.subarray(0, n));
    at += n;
  }
  const sum = hash.update(t.subarray(0, TRAILER_SUM_AT)).digest();
  if (!sum.equals(t.subarray(TRAILER_SUM_AT))) throw corrupt("checksum mismatch: index, config or trailer damaged");
  if (t.readUInt32LE(8) !== VERSION || t.readUInt32LE(12) !== 0 || header.readUInt32LE(12) !== 0) {
    throw corrupt("header and trailer disagree on version or flags");
  }
  const region = await readExactly(fh, indexOffset, configOffset - indexOffset, file);
  const config = new Uint8Array(await readExactly(fh, configOffset, Number(configLengthB), file));
  const index: Index = new Map();
  let previous = "";
  for (let i = 0; i < count; i++) {
    const at = i * ENTRY_SIZE;
    const resource = region.readUInt8(at);
    if (resource !== Resource.PACKFILE && resource !== Resource.STATE) {
      throw corrupt(`index entry ${i}: unknown resource ${resource}`);
    }
    const key = String(resource) + region.toString("hex", at + 1, at + 33);
    if (key <= previous) throw corrupt(`index entry ${i}: out of order or duplicate`);
    previous = key;
    const offset = region.readBigUInt64LE(at + 33);
    const length = region.readBigUInt64LE(at + 41);
    if (offset < BigInt(HEADER_SIZE) || offset + length > indexOffsetB) {
      throw corrupt(`index entry ${i}: object ${offset}+${length} outside the data region (${HEADER_SIZE}..${indexOffset})`);
    }
    index.set(key, { offset: Number(offset), length: Number(length) });
  }
  return {
    size,
    generation: t.readBigUInt64LE(16),
    lineage: Buffer.from(t.subarray(24, 24 + LINEAGE_BYTES)),
    dataEnd: indexOffset,
    index,
    config,
  };
}

// --- the sidecar commit lock ---

interface LockHolder {
  text: string;
  pid: number | undefined;
  host: string | undefined;
  nonce: string | undefined;
  mtimeMs: number;
}

async function acquireFileLock(
  lockPath: string,
  tempPath: string,
  archive: string,
  waitMs: number,
  signal?: AbortSignal,
): Promise<{ verify: () => Promise<void>; release: () => Promise<void> }> {
  const nonce = randomBytes(16).toString("hex");
  const text = JSON.stringify({ pid: process.pid, host: hostname(), time: Date.now(), nonce });
  const deadline = Date.now() + waitMs;
  let delay = 5;
  for (;;) {
    throwIfAborted(signal);
    if (await createLockFile(lockPath, tempPath, text, signal)) {
      processState.heldLocks.add(nonce);
      const timer = setInterval(() => {
        const now = new Date();
        void fsp.utimes(lockPath, now, now).catch(() => undefined);
      }, LOCK_TOUCH_MS);
      timer.unref();
      return {
        verify: async () => {
          const now = await fsp.readFile(lockPath, "utf8").catch(() => undefined);
          if (now !== text) {
            throw new CofferError("LOCKED", `[ptar] lost the commit lock ${lockPath} of ${archive}`, { path: lockPath });
          }
        },
        release: async () => {
          clearInterval(timer);
          processState.heldLocks.delete(nonce);
          const now = await fsp.readFile(lockPath, "utf8").catch(() => undefined);
          if (now === text) await fsp.rm(lockPath, { force: true }).catch(() => undefined);
        },
      };
    }
    const holder = await readHolder(lockPath);
    if (holder === undefined) continue; // released meanwhile
    if (isStaleHolder(holder)) {
      await breakStaleLock(lockPath, holder);
      continue;
    }
    if (Date.now() >= deadline) {
      const who = holder.pid !== undefined ? `pid ${holder.pid} on ${holder.host ?? "?"}` : "an unknown process";
      throw new CofferError("LOCKED", `[ptar] ${archive} is being committed by ${who} (lock file ${lockPath})`, {
        path: lockPath,
        pid: holder.pid,
        host: holder.host,
      });
    }
    await sleep(Math.min(delay, Math.max(1, deadline - Date.now())), signal);
    delay = Math.min(delay * 2, 200);
  }
}

/**
 * Creates the lock file with its content in one step: written to a temp file
 * (named like a session temp, so the stale-temp sweep removes it if we die
 * here), then hard-linked to the lock name, which fails if a lock exists. A
 * writer killed at any moment thus never leaves an empty lock that nobody
 * can judge. Where hard links are not supported: O_EXCL create, then write.
 * Returns false if another lock exists.
 */
async function createLockFile(lockPath: string, tempPath: string, text: string, signal?: AbortSignal): Promise<boolean> {
  await io("write", tempPath, signal, () => fsp.writeFile(tempPath, text, { flag: "wx" }));
  try {
    await fsp.link(tempPath, lockPath);
    return true;
  } catch (e) {
    const code = errno(e);
    if (code === "EEXIST") return false;
    if (!["EPERM", "ENOTSUP", "EOPNOTSUPP", "ENOSYS", "EXDEV"].includes(code ?? "")) {
      throw toStoreError(e, "link", lockPath, signal);
    }
  } finally {
    await fsp.rm(tempPath, { force: true }).catch(() => undefined);
  }
  let fh: FileHandle;
  try {
    fh = await fsp.open(lockPath, "wx");
  } catch (e) {
    if (errno(e) === "EEXIST") return false;
    throw toStoreError(e, "create", lockPath, signal);
  }
  try {
    await fh.writeFile(text);
    await fh.close();
    return true;
  } catch (e) {
    await fh.close().catch(() => undefined);
    await fsp.rm(lockPath, { force: true }).catch(() => undefined);
    throw toStoreError(e, "write", lockPath, signal);
  }
}

async function readHolder(lockPath: string): Promise<LockHolder | undefined> {
  try {
    const [text, st] = await Promise.all([fsp.readFile(lockPath, "utf8"), fsp.stat(lockPath)]);
    let o: Record<string, unknown> = {};
    try {
      const parsed: unknown = JSON.parse(text);
      if (typeof parsed === "object" && parsed !== null) o = parsed as Record<string, unknown>;
    } catch {
      // half-written or foreign: judged by age only
    }
    return {
      text,
      pid: typeof o.pid === "number" ? o.pid : undefined,
      host: typeof o.host === "string" ? o.host : undefined,
      nonce: typeof o.nonce === "string" ? o.nonce : undefined,
      mtimeMs: st.mtimeMs,
    };
  } catch (e) {
    if (errno(e) === "ENOENT") return undefined;
    throw toStoreError(e, "read", lockPath);
  }
}

function isStaleHolder(h: LockHolder): boolean {
  if (Date.now() - h.mtimeMs > LOCK_STALE_MS) return true;
  if (h.host !== hostname() || h.pid === undefined) return false;
  // Our own pid: stale unless this process holds it (a dead process's pid reused by us).
  if (h.pid === process.pid) return h.nonce === undefined || !processState.heldLocks.has(h.nonce);
  return !pidAlive(h.pid);
}

/**
 * Removes a stale lock file. It is renamed aside first and checked: if
 * another process replaced it with a fresh lock in between, that one is put
 * back.
 */
async function breakStaleLock(lockPath: string, holder: LockHolder): Promise<void> {
  const aside = `${lockPath}.${randomBytes(8).toString("hex")}.stale`;
  try {
    await fsp.rename(lockPath, aside);
  } catch (e) {
    if (errno(e) === "ENOENT") return;
    throw toStoreError(e, "rename", lockPath);
  }
  const text = await fsp.readFile(aside, "utf8").catch(() => undefined);
  if (text !== holder.text) await fsp.link(aside, lockPath).catch(() => undefined);
  await fsp.rm(aside, { force: true }).catch(() => undefined);
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return errno(e) === "EPERM";
  }
}

// --- small helpers ---

/** A read (or session) file handle, closed once retired and no read is using it. */
class Handle {
  readonly fh: FileHandle;
  /** For messages: the temp file's name, then the archive's once committed. */
  path: string;
  users = 0;
  #retired = false;
  constructor(fh: FileHandle, file: string) {
    this.fh = fh;
    this.path = file;
  }

  release(): void {
    this.users--;
    if (this.#retired && this.users === 0) void this.fh.close().catch(() => undefined);
  }

  retire(): void {
    if (this.#retired) return;
    this.#retired = true;
    if (this.users === 0) void this.fh.close().catch(() => undefined);
  }
}

/** A FIFO async mutex; waiting can be aborted. */
class Mutex {
  #locked = false;
  readonly #waiters: (() => void)[] = [];

  async lock(signal?: AbortSignal): Promise<() => void> {
    throwIfAborted(signal);
    if (this.#locked) {
      await new Promise<void>((resolve, reject) => {
        const wake = () => {
          signal?.removeEventListener("abort", onAbort);
          resolve();
        };
        const onAbort = () => {
          const i = this.#waiters.indexOf(wake);
          if (i >= 0) this.#waiters.splice(i, 1);
          reject(abortError(signal));
        };
        this.#waiters.push(wake);
        signal?.addEventListener("abort", onAbort, { once: true });
      });
    }
    this.#locked = true;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.#waiters.shift();
      if (next !== undefined) next();
      else this.#locked = false;
    };
  }
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(timer);
      reject(abortError(signal));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

async function collect(data: Uint8Array | AsyncIterable<Uint8Array>, signal?: AbortSignal): Promise<Uint8Array> {
  if (data instanceof Uint8Array) return new Uint8Array(data);
  const pieces: Uint8Array[] = [];
  let size = 0;
  try {
    for await (const piece of data) {
      throwIfAborted(signal);
      pieces.push(new Uint8Array(piece)); // producers may reuse their buffers
      size += piece.byteLength;
    }
  } catch (e) {
    throw signal?.aborted ? abortError(signal) : e;
  }
  const out = new Uint8Array(size);
  let at = 0;
  for (const p of pieces) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}

function slice(stored: Uint8Array, range: Range | undefined, what: string, data: Record<string, unknown>): Uint8Array {
  if (range === undefined) return stored.slice();
  const end = range.offset + range.length;
  if (end > stored.byteLength) {
    throw new CorruptError(what, `range ${range.offset}+${range.length} past the end (${stored.byteLength} bytes)`, {
      ...data,
      size: stored.byteLength,
    });
  }
  return stored.slice(range.offset, end);
}

async function readExactly(fh: FileHandle, position: number, length: number, file: string): Promise<Buffer> {
  const out = Buffer.alloc(length);
  await readInto(fh, out, length, position, file);
  return out;
}

async function readInto(fh: FileHandle, buf: Buffer, length: number, position: number, file: string): Promise<void> {
  let done = 0;
  while (done < length) {
    const at = position + done;
    const { bytesRead } = await io("read", file, undefined, () => fh.read(buf, done, length - done, at));
    if (bytesRead === 0) throw new CorruptError(file, `short read at ${at}`, { path: file });
    done += bytesRead;
  }
}

async function writeAt(fh: FileHandle, data: Uint8Array, position: number, file: string): Promise<void> {
  let done = 0;
  while (done < data.byteLength) {
    let bytesWritten: number;
    try {
      ({ bytesWritten } = await fh.write(data, done, data.byteLength - done, position + done));
    } catch (e) {
      throw toStoreError(e, "write", file);
    }
    done += bytesWritten;
  }
}

async function copyRange(
  src: FileHandle,
  srcFile: string,
  from: number,
  dst: FileHandle,
  dstFile: string,
  to: number,
  length: number,
  buf: Buffer,
): Promise<void> {
  let done = 0;
  while (done < length) {
    const want = Math.min(buf.byteLength, length - done);
    await readInto(src, buf, want, from + done, srcFile);
    await writeAt(dst, buf.subarray(0, want), to + done, dstFile);
    done += want;
  }
}

async function fsyncDir(dir: string): Promise<void> {
  let handle: FileHandle;
  try {
    handle = await fsp.open(dir, fsConstants.O_RDONLY);
  } catch (e) {
    throw toStoreError(e, "open", dir);
  }
  try {
    await handle.sync();
  } catch (e) {
    // Some platforms (Windows, some network filesystems) cannot fsync a directory.
    if (!["EINVAL", "EISDIR", "EPERM", "EBADF", "ENOTSUP"].includes(errno(e) ?? "")) throw toStoreError(e, "fsync", dir);
  } finally {
    await handle.close().catch(() => undefined);
  }
}

function checkResource(resource: Resource): void {
  if (resource !== Resource.PACKFILE && resource !== Resource.STATE && resource !== Resource.LOCK) {
    throw new TypeError(`unknown store resource ${String(resource)}`);
  }
}

function objectKey(resource: Resource, mac: Mac): string {
  checkResource(resource);
  if (!(mac instanceof Uint8Array) || mac.byteLength !== MAC_BYTES) {
    throw new TypeError(`a store MAC is ${MAC_BYTES} bytes`);
  }
  return String(resource) + toHex(mac);
}

function checkRange(range: Range): void {
  const ok = (n: number) => Number.isSafeInteger(n) && n >= 0;
  if (!ok(range.offset) || !ok(range.length)) {
    throw new RangeError(`invalid range ${range.offset}+${range.length}`);
  }
}

function errno(e: unknown): string | undefined {
  return typeof e === "object" && e !== null && "code" in e && typeof e.code === "string" ? e.code : undefined;
}

async function io<T>(op: string, p: string, signal: AbortSignal | undefined, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    throw toStoreError(e, op, p, signal);
  }
}

/** CofferErrors pass through; an abort becomes INTERRUPTED; anything else IO naming the path. */
function toStoreError(e: unknown, op: string, p: string, signal?: AbortSignal): unknown {
  if (e instanceof CofferError) return e;
  if (signal?.aborted) return abortError(signal);
  if (e instanceof TypeError || e instanceof RangeError) return e;
  const detail = e instanceof Error ? e.message : String(e);
  return new CofferError("IO", `[ptar] ${op} ${p}: ${detail}`, { path: p, errno: errno(e) }, { cause: e });
}
