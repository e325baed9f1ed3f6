/**
 * The single-file Store (type "ptar"): a whole repository in one archive
 * file (format.ts; docs/FORMAT.md, "Single-file repositories (ptar)").
 *
 * The file under its final name is only ever replaced by rename(2) of a
 * complete, fsynced archive, so it is always the previous version or the new
 * one, whatever happens to the writer. A write session works on a temp copy
 * in the same directory (`.NAME.<pid>.<random>.tmp`): at its first put or
 * delete the current archive is copied (reflinked where the filesystem can),
 * its index and trailer cut off, and new objects are appended to it while
 * the index is kept in memory. sync() and close() commit: under the commit
 * lock (commit-lock.ts) they merge whatever another writer committed
 * meanwhile (rewrite.ts), write the index, config and trailer, fsync,
 * rename over the final name and fsync the directory. The next write starts
 * a new session.
 *
 * What a store sees: the archive as it was when first read (or at the start
 * of its current write session, or its last commit, or open()), plus its own
 * uncommitted writes. Other processes see a store's writes once it commits.
 *
 * LOCK objects are never written to the file: they live in this process's
 * memory, shared by every PtarStore on the same path in the process
 * (process-state.ts). Locks between processes are only the commit lock,
 * held around each commit.
 */
import { randomBytes } from "node:crypto";
import { constants as fsConstants, promises as fsp } from "node:fs";
import type { FileHandle } from "node:fs/promises";
import { hostname } from "node:os";
import * as path from "node:path";
import { abortError, CofferError, CorruptError, NotFoundError, throwIfAborted } from "../../util/errors.js";
import { equalBytes } from "../../util/hex.js";
import { LocationFlag, Resource, resourceName } from "../flags.js";
import { errno, linkUnsupported, sweepStaleTemps } from "../local-io.js";
import { checkRange, checkResource, collectPut, configChanged, macHex, macsOf, noRepository, rangeWithin, refuseIfReadOnly, repositoryExists, storeMode } from "../store-checks.js";
import type { CallOptions, Mac, Range, Store } from "../store.js";
import { Handle, io, openArchive, readArchive, writeTail } from "./archive-file.js";
import { lockCommit } from "./commit-lock.js";
import { type Archive, ENTRY_SIZE, HEADER_MAGIC, HEADER_SIZE, headerBytes, type Index, LINEAGE_BYTES, TRAILER_SIZE } from "./format.js";
import { Mutex } from "./mutex.js";
import { processLocks, processState } from "./process-state.js";
import { compact, mergeCommitted, worthCompacting } from "./rewrite.js";

export interface PtarStoreOptions {
  /** Open for reading only: put(), delete() and create() reject with READ_ONLY; nothing is ever written. */
  readOnly?: boolean | undefined;
  /** How long a commit waits for another process's commit lock before failing with LOCKED (default 60 s). */
  lockWaitMs?: number | undefined;
}

/** A live session refreshes its temp file's mtime this often, so it never looks stale. */
const TMP_TOUCH_MS = 10 * 60 * 1000;
const LOCK_WAIT_MS = 60 * 1000;

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
  /** A configuration to commit in place of the one read (replaceConfig), if it still is `expected` under the commit lock. */
  replace?: { config: Uint8Array; expected: Uint8Array } | undefined;
  timer: NodeJS.Timeout;
}

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
    await io.run("mkdir", this.#dir, signal, () => fsp.mkdir(this.#dir, { recursive: true }));
    const existing = await fsp.lstat(this.root).catch((e: unknown) => {
      if (errno(e) === "ENOENT") return undefined;
      throw io.error(e, "stat", this.root, signal);
    });
    if (existing !== undefined && !(existing.isFile() && existing.size === 0)) {
      if (existing.isDirectory()) throw new CofferError("IO", `[ptar] ${this.root} is a directory`, { path: this.root });
      throw await this.#inTheWay(existing.isFile());
    }
    throwIfAborted(signal);
    const tmp = this.#tempName();
    const fh = await io.run("create", tmp, signal, () => fsp.open(tmp, "wx+"));
    try {
      await io.writeFully(fh, headerBytes(), 0, tmp);
      await writeTail(fh, tmp, HEADER_SIZE, new Map(), config, 1n, randomBytes(LINEAGE_BYTES));
      await io.run("close", tmp, signal, () => fh.close());
      throwIfAborted(signal);
      // link() refuses to replace: of two concurrent creates only one wins.
      await fsp.link(tmp, this.root).catch(async (e: unknown) => {
        const code = errno(e);
        if (code === "EEXIST") {
          const st = await fsp.lstat(this.root).catch(() => undefined);
          if (!(st?.isFile() && st.size === 0)) throw await this.#inTheWay(st?.isFile() ?? false);
        } else if (!linkUnsupported(e)) {
          throw e;
        }
        await fsp.rename(tmp, this.root);
      });
    } catch (e) {
      await fh.close().catch(() => undefined);
      throw io.error(e, "write", this.root, signal);
    } finally {
      await fsp.rm(tmp, { force: true }).catch(() => undefined);
    }
    await io.fsyncDir(this.#dir);
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
    const st = await io.statRoot(this.root, signal);
    if (!st.isFile()) throw new CofferError("IO", `[ptar] ${this.root}: not a file`, { path: this.root });
    throwIfAborted(signal);
  }

  async mode(opts: CallOptions = {}): Promise<number> {
    throwIfAborted(opts.signal);
    return storeMode(this.#readOnly);
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
      names = [...processLocks(this.root).keys()];
    } else {
      const view = await this.#loaded(signal);
      const prefix = String(resource);
      names = [];
      for (const key of view.index.keys()) if (key[0] === prefix) names.push(key.slice(1)); // a snapshot
    }
    yield* macsOf(names, signal);
  }

  async put(resource: Resource, mac: Mac, data: Uint8Array | AsyncIterable<Uint8Array>, opts: CallOptions = {}): Promise<number> {
    const { signal } = opts;
    throwIfAborted(signal);
    this.#checkWritable("put");
    const key = objectKey(resource, mac);
    if (resource === Resource.LOCK) {
      const stored = await collectPut(data, signal);
      throwIfAborted(signal);
      processLocks(this.root).set(key.slice(1), stored);
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
          await io.writeFully(fh, data, start, s.tmp);
          size = data.byteLength;
        } else {
          for await (const piece of data) {
            throwIfAborted(signal);
            await io.writeFully(fh, piece, start + size, s.tmp);
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
      const stored = processLocks(this.root).get(key.slice(1));
      if (stored === undefined) throw new NotFoundError(what, data);
      const { offset, length } = rangeWithin(range, stored.byteLength, what, data);
      return stored.slice(offset, offset + length);
    }
    // Read the view synchronously after the await: a view replaced meanwhile has its handle retired.
    let view = this.#view;
    while (view === undefined) {
      await this.#loaded(signal);
      view = this.#view;
    }
    const entry = view.index.get(key);
    if (entry === undefined) throw new NotFoundError(what, data);
    const { offset, length } = rangeWithin(range, entry.length, what, data);
    const handle = view.handle;
    handle.users++;
    try {
      const out = new Uint8Array(length);
      const short = (at: number) => new CorruptError(this.root, `short read of ${what} at ${at}`, { path: this.root });
      await io.readFully(handle.fh, out, entry.offset + offset, handle.path, short, signal);
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
      const locks = processLocks(this.root);
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

  /**
   * Commits what this store has written so far with `config` in place of
   * the configuration, as sync() commits (one rename of a whole archive),
   * if the committed archive's configuration still is `expected` under the
   * commit lock. On failure nothing is committed and the session is as it
   * was before the call.
   */
  async replaceConfig(config: Uint8Array, expected: Uint8Array, opts: CallOptions = {}): Promise<void> {
    const { signal } = opts;
    throwIfAborted(signal);
    this.#checkWritable("replace the configuration");
    const release = await this.#mutex.lock(signal);
    try {
      const s = this.#session ?? (await this.#startSession(signal));
      const dirty = s.dirty;
      s.replace = { config: new Uint8Array(config), expected: new Uint8Array(expected) };
      s.dirty = true;
      try {
        await this.#commit(signal);
      } catch (e) {
        if (this.#session === s) {
          s.replace = undefined;
          s.dirty = dirty;
        }
        throw e;
      }
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
    const { fh, st, archive } = await openArchive(this.root, () => noRepository(this.root), signal);
    if (signal?.aborted) {
      await fh.close().catch(() => undefined);
      throw abortError(signal);
    }
    const view: View = {
      handle: new Handle(fh, this.root),
      index: archive.index,
      config: archive.config,
      base: baseOf(archive),
      file: { dev: st.dev, ino: st.ino, size: st.size },
    };
    this.#setView(view);
    return view;
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
      throw io.error(e, "stat", this.root, signal);
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
      await this.#sweepStaleTemps();
    }
    throwIfAborted(signal);
    const tmp = this.#tempName();
    try {
      await fsp.copyFile(this.root, tmp, fsConstants.COPYFILE_EXCL | fsConstants.COPYFILE_FICLONE);
    } catch (e) {
      await fsp.rm(tmp, { force: true }).catch(() => undefined);
      const code = errno(e);
      if (code === "ENOENT" || code === "ENOTDIR") throw noRepository(this.root);
      throw io.error(e, "copy", this.root, signal);
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
      throw io.error(e, "read", tmp, signal);
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
    const unlock = await lockCommit(this.root, this.lockPath, this.#tempName(), this.#lockWaitMs, signal);
    let disk: { fh: FileHandle; archive: Archive } | undefined;
    let compacted: { fh: FileHandle; tmp: string; index: Index; tail: number } | undefined;
    try {
      // What is under the final name now?
      disk = await openArchive(this.root, () => this.#removedMeanwhile(), signal);
      let index = view.index;
      let tail = s.tail;
      let generation = view.base.generation + 1n;
      let lineage = view.base.lineage;
      let config = view.config;
      const theirs = disk.archive;
      if (s.replace !== undefined && !equalBytes(theirs.config, s.replace.expected)) throw configChanged(this.root);
      if (theirs.generation !== view.base.generation || theirs.size !== view.base.size) {
        // Another writer committed since our base: keep what it did, apply our puts and deletes on top.
        const ours = { index: view.index, base: view.base, added: s.added, deleted: s.deleted, fh: s.handle.fh, tmp: s.tmp, tail: s.tail };
        ({ index, tail } = await mergeCommitted(ours, { fh: disk.fh, file: this.root, archive: theirs }, signal));
        generation = (theirs.generation > view.base.generation ? theirs.generation : view.base.generation) + 1n;
        lineage = randomBytes(LINEAGE_BYTES);
        config = theirs.config;
      }
      if (s.replace !== undefined) config = s.replace.config;
      let target = { fh: s.handle.fh, tmp: s.tmp };
      if (worthCompacting(index, tail)) {
        compacted = await compact(s.handle.fh, this.root, index, this.#tempName(), signal);
        ({ index, tail } = compacted);
        target = compacted;
        lineage = randomBytes(LINEAGE_BYTES);
      }
      throwIfAborted(signal);
      const size = await writeTail(target.fh, target.tmp, tail, index, config, generation, lineage);
      await unlock.verify();
      await io.run("rename", this.root, signal, () => fsp.rename(target.tmp, this.root));
      // Committed: from here nothing undoes it.
      await io.fsyncDir(this.#dir).catch(() => undefined);
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
      throw io.error(e, "commit", this.root, signal);
    } finally {
      if (compacted !== undefined) {
        await compacted.fh.close().catch(() => undefined);
        await fsp.rm(compacted.tmp, { force: true }).catch(() => undefined);
      }
      await disk?.fh.close().catch(() => undefined);
      await unlock.release();
    }
  }

  /** What a commit finds when the archive is gone. */
  #removedMeanwhile(): CofferError {
    return new CofferError("NO_REPOSITORY", `[ptar] ${this.root} was removed during the write session`, { root: this.root });
  }

  /** Removes session temps of this archive left by writers that died (local-io.ts, STALE_TEMP_MS). */
  async #sweepStaleTemps(): Promise<void> {
    const prefix = `.${this.#name}.`;
    await sweepStaleTemps(this.#dir, (name) => name.startsWith(prefix) && name.endsWith(".tmp"));
  }

  #tempName(): string {
    return path.join(this.#dir, `.${this.#name}.${process.pid}.${randomBytes(8).toString("hex")}.tmp`);
  }

  #checkWritable(op: string): void {
    refuseIfReadOnly(this.#readOnly, "ptar", this.root, op);
  }

  /** Why create() refuses what is at the path: an archive (REPOSITORY_EXISTS), or anything else that is not an empty file (NOT_EMPTY). */
  async #inTheWay(isFile: boolean): Promise<CofferError> {
    if (isFile) {
      const head = Buffer.alloc(HEADER_MAGIC.byteLength);
      const fh = await fsp.open(this.root, "r").catch(() => undefined);
      const n = fh ? await fh.read(head, 0, head.byteLength, 0).then((r) => r.bytesRead, () => 0) : 0;
      await fh?.close().catch(() => undefined);
      if (n === head.byteLength && head.equals(HEADER_MAGIC)) return repositoryExists(this.root);
    }
    return new CofferError("NOT_EMPTY", `cannot create a repository at ${this.root}: the file exists and is not empty (and is not a coffer archive); give a new or empty file`, {
      root: this.root,
    });
  }
}

function baseOf(a: Archive): View["base"] {
  return { size: a.size, generation: a.generation, lineage: a.lineage, dataEnd: a.dataEnd };
}

/** Object key: the resource digit, then the MAC's hex (format.ts, Index). */
function objectKey(resource: Resource, mac: Mac): string {
  checkResource(resource);
  return String(resource) + macHex(mac);
}
