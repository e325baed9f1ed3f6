/**
 * The built-in local-directory Store (type "fs").
 *
 * Layout under the root:
 *   CONFIG                   the repository's config blob (written last by create())
 *   packfiles/XX/<64 hex>    packfiles, fanned out by the first two hex chars
 *   states/XX/<64 hex>       state objects, same fan-out
 *   locks/<64 hex>           locks, flat
 *   tmp/                     in-progress writes
 *
 * Every write goes to tmp/<random>, is fsynced, renamed into place, and the
 * target directory is fsynced; concurrent directory fsyncs are batched. So a
 * reader sees a whole object or none, even across a crash. Fan-out
 * directories are created on demand.
 */
import { randomBytes } from "node:crypto";
import { closeSync, constants as fsConstants, openSync, promises as fsp, write as fsWrite, writeSync } from "node:fs";
import type { FileHandle } from "node:fs/promises";
import { hostname } from "node:os";
import * as path from "node:path";
import { abortError, CofferError, CorruptError, isCofferError, NotFoundError, throwIfAborted } from "../util/errors.js";
import { fromHex, toHex } from "../util/hex.js";
import { copyInto } from "../util/ring.js";
import { LocationFlag, Resource, resourceName, StoreMode } from "./flags.js";
import type { CallOptions, Mac, Range, StagedPut, StageOptions, Store } from "./store.js";

export interface FsStoreOptions {
  /** Open for reading only: put(), delete() and create() reject with READ_ONLY. */
  readOnly?: boolean | undefined;
}

const CONFIG = "CONFIG";
const TMP = "tmp";
const MAC_BYTES = 32;
const MAC_NAME = /^[0-9a-f]{64}$/;
const FANOUT_NAME = /^[0-9a-f]{2}$/;
/** Read handles kept open (see #reader). */
const MAX_READERS = 32;

interface CachedReader {
  fh: FileHandle;
  size: number;
  users: number;
  evicted: boolean;
}

/** Temp files older than this are removed by open() (a crashed writer's leftovers). */
const STALE_TMP_MS = 60 * 60 * 1000;
/** Bound on concurrent stat() calls in size(). */
const STAT_CONCURRENCY = 32;
/** Largest single positional read. */
const READ_CHUNK = 8 * 1024 * 1024;

const RESOURCE_DIR: Record<Resource, { dir: string; fanout: boolean }> = {
  [Resource.PACKFILE]: { dir: "packfiles", fanout: true },
  [Resource.STATE]: { dir: "states", fanout: true },
  [Resource.LOCK]: { dir: "locks", fanout: false },
};

export class FsStore implements Store {
  readonly origin: string;
  readonly type = "fs";
  readonly root: string;
  readonly flags = LocationFlag.LOCALFS;
  readonly #readOnly: boolean;
  readonly #dirSync = new DirSyncer();
  /** Staging buffers of direct writes, free for the next staged object; `#directOk` false once the file system refused them. */
  readonly #stages: DirectStage[] = [];
  #directOk = DIRECT_FLAG !== 0;
  /** Writes done with O_DIRECT (DirectWriter), for diagnostics and tests. */
  readonly direct = { writes: 0 };

  constructor(root: string, opts: FsStoreOptions = {}) {
    this.root = path.resolve(root);
    this.origin = hostname() || this.root;
    this.#readOnly = opts.readOnly === true;
  }

  async create(config: Uint8Array, opts: CallOptions = {}): Promise<void> {
    const { signal } = opts;
    throwIfAborted(signal);
    this.#checkWritable("create");
    const configPath = path.join(this.root, CONFIG);
    const createdRoot = await this.#io("mkdir", this.root, signal, () => fsp.mkdir(this.root, { recursive: true })).catch((e: unknown) => {
      if (isCofferError(e) && (e.data.errno === "EEXIST" || e.data.errno === "ENOTDIR")) throw new CofferError("IO", `cannot create a repository at ${this.root}: it exists and is not a directory`, { path: this.root, errno: e.data.errno });
      throw e;
    });
    if (await exists(configPath, signal)) throw this.#exists();
    if (createdRoot === undefined) await this.#checkEmpty(signal);
    for (const dir of [TMP, ...Object.values(RESOURCE_DIR).map((r) => r.dir)]) {
      const p = path.join(this.root, dir);
      await this.#io("mkdir", p, signal, () => fsp.mkdir(p, { recursive: true }));
    }
    throwIfAborted(signal);
    const { tmp } = await this.#writeTemp(config, signal);
    try {
      throwIfAborted(signal);
      // link() refuses to replace: two concurrent create() calls cannot both win.
      await fsp.link(tmp, configPath).catch(async (e: unknown) => {
        if (errno(e) === "EEXIST") throw this.#exists();
        if (!["EPERM", "ENOTSUP", "EOPNOTSUPP", "ENOSYS", "EXDEV"].includes(errno(e) ?? "")) throw e;
        if (await exists(configPath, signal)) throw this.#exists();
        await fsp.rename(tmp, configPath);
      });
    } catch (e) {
      throw toStoreError(e, "write", configPath, signal);
    } finally {
      await fsp.rm(tmp, { force: true }).catch(() => undefined);
    }
    await this.#syncCreated(createdRoot, this.root);
    await this.#dirSync.sync(this.root);
  }

  async open(opts: CallOptions = {}): Promise<Uint8Array> {
    const { signal } = opts;
    throwIfAborted(signal);
    const configPath = path.join(this.root, CONFIG);
    let config: Uint8Array;
    try {
      config = new Uint8Array(await fsp.readFile(configPath));
    } catch (e) {
      const code = errno(e);
      if (code === "ENOENT" || code === "ENOTDIR") throw noRepository(this.root);
      throw toStoreError(e, "read", configPath, signal);
    }
    if (!this.#readOnly) await this.#removeStaleTemps();
    throwIfAborted(signal);
    return config;
  }

  async ping(opts: CallOptions = {}): Promise<void> {
    const { signal } = opts;
    throwIfAborted(signal);
    let isDir: boolean;
    try {
      isDir = (await fsp.stat(this.root)).isDirectory();
    } catch (e) {
      const code = errno(e);
      if (code === "ENOENT" || code === "ENOTDIR") throw noRepository(this.root);
      throw toStoreError(e, "stat", this.root, signal);
    }
    if (!isDir) throw new CofferError("IO", `${this.root}: not a directory`, { path: this.root });
    throwIfAborted(signal);
  }

  async mode(opts: CallOptions = {}): Promise<number> {
    throwIfAborted(opts.signal);
    return this.#readOnly ? StoreMode.READ : StoreMode.READ | StoreMode.WRITE;
  }

  /** Bytes of CONFIG and every object (temp files not counted). One stat per object: not cheap on huge stores. */
  async size(opts: CallOptions = {}): Promise<number> {
    const { signal } = opts;
    throwIfAborted(signal);
    const files: string[] = [path.join(this.root, CONFIG)];
    for (const resource of Object.values(Resource)) {
      for await (const file of this.#objectFiles(resource, signal)) files.push(file.path);
    }
    let total = 0;
    await eachLimit(files, STAT_CONCURRENCY, async (file) => {
      throwIfAborted(signal);
      try {
        const { size } = await fsp.stat(file); // not `total += await ...`: that reads total before the await
        total += size;
      } catch (e) {
        if (errno(e) !== "ENOENT") throw toStoreError(e, "stat", file, signal); // deleted meanwhile
      }
    });
    return total;
  }

  async *list(resource: Resource, opts: CallOptions = {}): AsyncIterable<Mac> {
    const { signal } = opts;
    throwIfAborted(signal);
    for await (const file of this.#objectFiles(resource, signal)) {
      throwIfAborted(signal);
      yield fromHex(file.name);
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
    const { tmp, size } = await this.#writeTemp(data, signal);
    await this.#install(tmp, resource, mac, signal);
    return size;
  }

  /**
   * Writes go straight to a temp file (writev), which commit() fsyncs and
   * renames into place as put() does. With the `direct` hint they go
   * through a staging buffer with O_DIRECT (DirectWriter).
   */
  async stage(resource: Resource, opts: StageOptions = {}): Promise<StagedPut> {
    const { signal } = opts;
    throwIfAborted(signal);
    this.#checkWritable("put");
    const { tmp, handle } = await this.#openTemp(signal);
    let size = 0;
    let state: "open" | "done" = "open";
    let direct = opts.direct === true && this.#directOk ? this.#openDirect(tmp, handle) : null;
    const drop = async () => {
      state = "done";
      direct = this.#endDirect(direct);
      await handle.close().catch(() => undefined);
      await fsp.rm(tmp, { force: true }).catch(() => undefined);
    };
    return {
      write: async (parts) => {
        if (state !== "open") throw new CofferError("IO", `[fs] staged write to ${tmp} after its end`);
        try {
          if (direct) await direct.write(parts, signal);
          else await writevAll(handle, parts, tmp, signal);
          size += parts.reduce((n, p) => n + p.byteLength, 0);
        } catch (e) {
          await drop();
          throw e;
        }
      },
      commit: async (mac, o = {}) => {
        if (state !== "open") throw new CofferError("IO", `[fs] staged object ${tmp} committed after its end`);
        state = "done";
        try {
          throwIfAborted(o.signal);
          if (direct) await direct.finish(o.signal);
          direct = this.#endDirect(direct);
          await this.#io("fsync", tmp, o.signal, () => handle.sync());
          await this.#io("close", tmp, o.signal, () => handle.close());
        } catch (e) {
          await drop();
          throw o.signal?.aborted ? abortError(o.signal) : e;
        }
        await this.#install(tmp, resource, mac, o.signal);
        return size;
      },
      abort: async () => {
        if (state === "open") await drop();
      },
    };
  }

  /**
   * A direct writer for temp file `tmp` (a second descriptor, opened with
   * O_DIRECT), or null when the file system refuses direct writes (then
   * this store stops trying).
   */
  #openDirect(tmp: string, handle: FileHandle): DirectWriter | null {
    let fd: number;
    try {
      fd = openSync(tmp, fsConstants.O_WRONLY | DIRECT_FLAG);
    } catch {
      this.#directOk = false; // e.g. EINVAL on tmpfs
      return null;
    }
    const stage = this.#stages.pop() ?? { buf: Buffer.allocUnsafeSlow(DIRECT_STAGE + DIRECT_BLOCK), base: undefined };
    if (stage.base === undefined) stage.base = probeDirect(fd, stage.buf);
    if (stage.base === null) {
      closeSync(fd);
      this.#directOk = false;
      return null;
    }
    return new DirectWriter(fd, stage as DirectStage & { base: number }, handle, tmp, this.direct);
  }

  /** Closes `w`'s descriptor and keeps its staging buffer for the next staged object; gives null. */
  #endDirect(w: DirectWriter | null): null {
    if (w) this.#stages.push(w.close());
    return null;
  }

  /** Renames the fsynced temp file `tmp` into place as object `mac` (removing it on failure), then fsyncs the directory. */
  async #install(tmp: string, resource: Resource, mac: Mac, signal?: AbortSignal): Promise<void> {
    const target = this.#objectPath(resource, mac);
    const dir = path.dirname(target);
    try {
      throwIfAborted(signal);
      const created = await this.#io("mkdir", dir, signal, () => fsp.mkdir(dir, { recursive: true }));
      throwIfAborted(signal);
      await this.#io("rename", target, signal, () => fsp.rename(tmp, target));
      await this.#syncCreated(created, dir);
    } catch (e) {
      await fsp.rm(tmp, { force: true }).catch(() => undefined);
      throw toStoreError(e, "write", target, signal);
    }
    // The object is in place: from here an abort no longer undoes the put.
    await this.#dirSync.sync(dir);
  }

  async get(resource: Resource, mac: Mac, range?: Range, opts: CallOptions = {}): Promise<Uint8Array> {
    const { signal } = opts;
    throwIfAborted(signal);
    if (range !== undefined) checkRange(range);
    const file = this.#objectPath(resource, mac);
    const what = `${resourceName(resource)} ${toHex(mac)}`;
    let r: CachedReader;
    try {
      r = await this.#reader(file);
    } catch (e) {
      const code = errno(e);
      if (code === "ENOENT" || code === "ENOTDIR") throw new NotFoundError(what, { resource, mac: toHex(mac) });
      throw toStoreError(e, "open", file, signal);
    }
    r.users++;
    try {
      const size = r.size;
      const offset = range?.offset ?? 0;
      const length = range?.length ?? size;
      if (offset + length > size) {
        throw new CorruptError(what, `range ${offset}+${length} past the end (${size} bytes)`, {
          resource,
          mac: toHex(mac),
          size,
        });
      }
      const out = new Uint8Array(length);
      let done = 0;
      while (done < length) {
        throwIfAborted(signal);
        const want = Math.min(READ_CHUNK, length - done);
        const { bytesRead } = await r.fh.read(out, done, want, offset + done);
        if (bytesRead === 0) throw new CorruptError(what, `short read at ${offset + done} (${size} bytes expected)`);
        done += bytesRead;
      }
      return out;
    } catch (e) {
      throw toStoreError(e, "read", file, signal);
    } finally {
      r.users--;
      if (r.evicted && r.users === 0) await r.fh.close().catch(() => undefined);
    }
  }

  /**
   * Open read handles, most recently used last: objects are immutable once
   * stored, so a restore's many ranged reads of one packfile share a handle.
   */
  #readers = new Map<string, Promise<CachedReader>>();

  async #reader(file: string): Promise<CachedReader> {
    const hit = this.#readers.get(file);
    if (hit) {
      this.#readers.delete(file);
      this.#readers.set(file, hit);
      return hit;
    }
    const p = (async () => {
      const fh = await fsp.open(file, fsConstants.O_RDONLY);
      try {
        return { fh, size: (await fh.stat()).size, users: 0, evicted: false };
      } catch (e) {
        await fh.close().catch(() => undefined);
        throw e;
      }
    })();
    this.#readers.set(file, p);
    p.catch(() => this.#readers.delete(file));
    while (this.#readers.size > MAX_READERS) void this.#evict(this.#readers.keys().next().value!);
    return p;
  }

  #evict(file: string): Promise<void> {
    const p = this.#readers.get(file);
    if (!p) return Promise.resolve();
    this.#readers.delete(file);
    return p.then(
      async (r) => {
        r.evicted = true;
        if (r.users === 0) await r.fh.close().catch(() => undefined);
      },
      () => undefined,
    );
  }

  async delete(resource: Resource, mac: Mac, opts: CallOptions = {}): Promise<void> {
    const { signal } = opts;
    throwIfAborted(signal);
    this.#checkWritable("delete");
    void this.#evict(this.#objectPath(resource, mac));
    const file = this.#objectPath(resource, mac);
    try {
      await fsp.unlink(file);
    } catch (e) {
      const code = errno(e);
      if (code === "ENOENT" || code === "ENOTDIR") {
        throw new NotFoundError(`${resourceName(resource)} ${toHex(mac)}`, { resource, mac: toHex(mac) });
      }
      throw toStoreError(e, "delete", file, signal);
    }
    await this.#dirSync.sync(path.dirname(file));
  }

  /** Closes the cached read handles (one still in use closes when its read ends). */
  async close(): Promise<void> {
    await Promise.all([...this.#readers.keys()].map((f) => this.#evict(f)));
  }

  #checkWritable(op: string): void {
    if (this.#readOnly) {
      throw new CofferError("READ_ONLY", `[fs] ${this.root} is read-only: ${op} refused`, { root: this.root });
    }
  }

  /**
   * Refuses a directory that holds anything but the empty directories of
   * the layout (which a create that failed before writing CONFIG leaves):
   * another repository's packfiles without its CONFIG, or anyone's files.
   */
  async #checkEmpty(signal?: AbortSignal): Promise<void> {
    const layout = new Set([TMP, ...Object.values(RESOURCE_DIR).map((r) => r.dir)]);
    const found: string[] = [];
    for (const e of await this.#readdir(this.root, signal)) {
      if (e.isDirectory() && layout.has(e.name)) {
        const inside = await fsp.readdir(path.join(this.root, e.name), { recursive: true }).catch(() => ["?"]);
        if (inside.length === 0) continue;
        found.push(`${e.name}/ (${inside.length} entries)`);
      } else found.push(e.isDirectory() ? `${e.name}/` : e.name);
    }
    if (found.length === 0) return;
    const shown = found.sort().slice(0, 3).join(", ") + (found.length > 3 ? `, and ${found.length - 3} more` : "");
    throw new CofferError("NOT_EMPTY", `cannot create a repository at ${this.root}: the directory is not empty (it holds ${shown}); give an empty or new directory`, {
      root: this.root,
    });
  }

  #exists(): CofferError {
    return new CofferError("REPOSITORY_EXISTS", `a repository already exists at ${this.root}`, { root: this.root });
  }

  localPath(resource: Resource, mac: Mac): string {
    return this.#objectPath(resource, mac);
  }

  #objectPath(resource: Resource, mac: Mac): string {
    checkMac(mac);
    const layout = RESOURCE_DIR[resource];
    if (layout === undefined) throw new TypeError(`unknown store resource ${String(resource)}`);
    const hex = toHex(mac);
    return layout.fanout
      ? path.join(this.root, layout.dir, hex.slice(0, 2), hex)
      : path.join(this.root, layout.dir, hex);
  }

  /** Object files of a resource: regular files with a 64-hex name in the right place. */
  async *#objectFiles(resource: Resource, signal?: AbortSignal): AsyncIterable<{ name: string; path: string }> {
    const layout = RESOURCE_DIR[resource];
    if (layout === undefined) throw new TypeError(`unknown store resource ${String(resource)}`);
    const base = path.join(this.root, layout.dir);
    const dirs: { dir: string; prefix: string | undefined }[] = [];
    if (layout.fanout) {
      for (const entry of await this.#readdir(base, signal)) {
        if (entry.isDirectory() && FANOUT_NAME.test(entry.name)) {
          dirs.push({ dir: path.join(base, entry.name), prefix: entry.name });
        }
      }
    } else {
      dirs.push({ dir: base, prefix: undefined });
    }
    for (const { dir, prefix } of dirs) {
      throwIfAborted(signal);
      for (const entry of await this.#readdir(dir, signal)) {
        if (!entry.isFile() || !MAC_NAME.test(entry.name)) continue;
        if (prefix !== undefined && !entry.name.startsWith(prefix)) continue;
        yield { name: entry.name, path: path.join(dir, entry.name) };
      }
    }
  }

  async #readdir(dir: string, signal?: AbortSignal) {
    try {
      return await fsp.readdir(dir, { withFileTypes: true });
    } catch (e) {
      if (errno(e) === "ENOENT") return [];
      throw toStoreError(e, "readdir", dir, signal);
    }
  }

  /** Stream data into a fresh fsynced temp file; returns its path and size. Removes it on failure. */
  async #writeTemp(
    data: Uint8Array | AsyncIterable<Uint8Array>,
    signal?: AbortSignal,
  ): Promise<{ tmp: string; size: number }> {
    const { tmp, handle } = await this.#openTemp(signal);
    let size = 0;
    try {
      if (data instanceof Uint8Array) {
        await writeAll(handle, data, tmp, signal);
        size = data.byteLength;
      } else {
        for await (const piece of data) {
          throwIfAborted(signal);
          await writeAll(handle, piece, tmp, signal);
          size += piece.byteLength;
        }
      }
      throwIfAborted(signal);
      await this.#io("fsync", tmp, signal, () => handle.sync());
      await this.#io("close", tmp, signal, () => handle.close());
      return { tmp, size };
    } catch (e) {
      await handle.close().catch(() => undefined);
      await fsp.rm(tmp, { force: true }).catch(() => undefined);
      throw signal?.aborted ? abortError(signal) : e; // a source's own error passes through unchanged
    }
  }

  /** A fresh temp file, open for writing. */
  async #openTemp(signal?: AbortSignal): Promise<{ tmp: string; handle: FileHandle }> {
    const tmpDir = path.join(this.root, TMP);
    const tmp = path.join(tmpDir, `${randomBytes(16).toString("hex")}.tmp`);
    try {
      return { tmp, handle: await fsp.open(tmp, "wx") };
    } catch (e) {
      if (errno(e) !== "ENOENT") throw toStoreError(e, "create", tmp, signal);
      await this.#io("mkdir", tmpDir, signal, () => fsp.mkdir(tmpDir, { recursive: true }));
      return { tmp, handle: await this.#io("create", tmp, signal, () => fsp.open(tmp, "wx")) };
    }
  }

  /** After mkdir -p created `created` (its first new directory) on the way to `leaf`, fsync the new entries' parents. */
  async #syncCreated(created: string | undefined, leaf: string): Promise<void> {
    if (created === undefined) return;
    const parents: string[] = [];
    for (let dir = leaf; dir !== path.dirname(created); dir = path.dirname(dir)) {
      parents.push(path.dirname(dir));
      if (dir === path.dirname(dir)) break;
    }
    await Promise.all(parents.map((p) => this.#dirSync.sync(p)));
  }

  async #removeStaleTemps(): Promise<void> {
    const tmpDir = path.join(this.root, TMP);
    const entries = await fsp.readdir(tmpDir).catch(() => [] as string[]);
    const cutoff = Date.now() - STALE_TMP_MS;
    await eachLimit(entries, STAT_CONCURRENCY, async (name) => {
      const p = path.join(tmpDir, name);
      const st = await fsp.lstat(p).catch(() => undefined);
      if (st?.isFile() && st.mtimeMs < cutoff) await fsp.rm(p, { force: true }).catch(() => undefined);
    });
  }

  async #io<T>(op: string, p: string, signal: AbortSignal | undefined, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      throw toStoreError(e, op, p, signal);
    }
  }
}

/**
 * Group commit for directory fsyncs: callers arriving while a directory is
 * being synced share the next fsync of that directory instead of each
 * issuing their own.
 */
class DirSyncer {
  readonly #queues = new Map<string, { resolve: () => void; reject: (e: unknown) => void }[]>();

  sync(dir: string): Promise<void> {
    return new Promise((resolve, reject) => {
      const queue = this.#queues.get(dir);
      if (queue !== undefined) {
        queue.push({ resolve, reject });
        return;
      }
      const fresh = [{ resolve, reject }];
      this.#queues.set(dir, fresh);
      void this.#drain(dir, fresh);
    });
  }

  async #drain(dir: string, queue: { resolve: () => void; reject: (e: unknown) => void }[]): Promise<void> {
    while (queue.length > 0) {
      const batch = queue.splice(0);
      try {
        await fsyncDir(dir);
        for (const w of batch) w.resolve();
      } catch (e) {
        for (const w of batch) w.reject(e);
      }
    }
    this.#queues.delete(dir);
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

/** Writes `data` whole (at `position` when given, else at the file's position), resuming after short writes. */
async function writeAll(handle: FileHandle, data: Uint8Array, p: string, signal?: AbortSignal, position?: number): Promise<void> {
  let done = 0;
  while (done < data.byteLength) {
    let bytesWritten: number;
    try {
      ({ bytesWritten } = await handle.write(data, done, data.byteLength - done, position === undefined ? null : position + done));
    } catch (e) {
      throw toStoreError(e, "write", p, signal);
    }
    done += bytesWritten;
  }
}

/**
 * Direct writes (O_DIRECT) of staged objects given the `direct` hint: the
 * repository gives it for packfiles filled from a large file's rings. Their
 * bytes would otherwise be copied into the page cache and written back by
 * the packfile's fsync while the file is still being read from the same
 * disk, and that write-back slows the file's reads (docs/PERFORMANCE.md).
 * Not for every packfile: the staging buffer costs 4 MiB and parts wait for
 * the disk rather than the page cache, which raised the peak RSS of a
 * first backup of many small files.
 */
const DIRECT_FLAG = fsConstants.O_DIRECT ?? 0;
/** Bytes staged per direct write. */
const DIRECT_STAGE = 4 << 20;
/** Direct writes keep their memory address, file offset and length to multiples of this. */
const DIRECT_BLOCK = 4096;

/** A staging buffer; from `base` on its memory is aligned for direct writes (undefined: not probed yet, null: no offset works). */
interface DirectStage {
  buf: Buffer;
  base: number | null | undefined;
}

/**
 * The offset of `buf` from which direct writes work, found by writing a
 * block at the start of the file from each candidate offset (JavaScript
 * cannot see a buffer's address; a misaligned one fails with EINVAL and
 * writes nothing); null when none does. The block is overwritten later.
 */
function probeDirect(fd: number, buf: Buffer): number | null {
  for (let at = 0; at < DIRECT_BLOCK; at += 16) {
    try {
      writeSync(fd, buf, at, DIRECT_BLOCK, 0);
      return at;
    } catch (e) {
      if (errno(e) !== "EINVAL") return null;
    }
  }
  return null;
}

/**
 * Writes a staged object through a staging buffer: each DIRECT_STAGE bytes
 * with one direct write at an offset that is a multiple of it; the rest
 * (less than that) at commit through the ordinary descriptor, then the file
 * is cut to its size. A direct write that fails with EINVAL (an alignment
 * the probe did not catch) is done again through the ordinary descriptor,
 * as are all writes after it.
 */
class DirectWriter {
  #fill = 0;
  #pos = 0;
  #fallback = false;

  constructor(
    private readonly fd: number,
    private readonly stage: DirectStage & { base: number },
    private readonly handle: FileHandle,
    private readonly path: string,
    private readonly count: { writes: number },
  ) {}

  async write(parts: readonly Uint8Array[], signal?: AbortSignal): Promise<void> {
    const { buf, base } = this.stage;
    for (const part of parts) {
      for (let o = 0; o < part.byteLength; ) {
        const n = Math.min(part.byteLength - o, DIRECT_STAGE - this.#fill);
        copyInto(buf, base + this.#fill, part.subarray(o, o + n));
        this.#fill += n;
        o += n;
        if (this.#fill === DIRECT_STAGE) await this.#flush(signal);
      }
    }
  }

  /** Writes what is staged: directly while DIRECT_STAGE bytes are, else (or after EINVAL) through the ordinary descriptor. */
  async #flush(signal?: AbortSignal): Promise<void> {
    throwIfAborted(signal);
    const { buf, base } = this.stage;
    const n = this.#fill;
    let done = 0;
    if (n === DIRECT_STAGE && !this.#fallback) {
      try {
        while (done < n) {
          done += await writeAt(this.fd, buf, base + done, n - done, this.#pos + done);
          this.count.writes++;
        }
      } catch (e) {
        if (errno(e) !== "EINVAL" || done % DIRECT_BLOCK !== 0) throw toStoreError(e, "write", this.path, signal);
        this.#fallback = true;
      }
    }
    if (done < n) await writeAll(this.handle, buf.subarray(base + done, base + n), this.path, signal, this.#pos + done);
    this.#pos += n;
    this.#fill = 0;
  }

  /** Writes the rest and cuts the file to the size written (the alignment probe may have written past it). */
  async finish(signal?: AbortSignal): Promise<void> {
    if (this.#fill > 0) await this.#flush(signal);
    try {
      await this.handle.truncate(this.#pos);
    } catch (e) {
      throw toStoreError(e, "write", this.path, signal);
    }
  }

  /** Closes the direct descriptor; gives back the staging buffer. */
  close(): DirectStage {
    try {
      closeSync(this.fd);
    } catch {
      // already unusable: nothing to release
    }
    return this.stage;
  }
}

function writeAt(fd: number, buf: Buffer, offset: number, length: number, position: number): Promise<number> {
  return new Promise((resolve, reject) => fsWrite(fd, buf, offset, length, position, (e, n) => (e ? reject(e) : resolve(n))));
}

/** Writes `parts` in order with writev (at most IOV_MAX buffers a call), resuming after short writes. */
async function writevAll(handle: FileHandle, parts: readonly Uint8Array[], p: string, signal?: AbortSignal): Promise<void> {
  const IOV_MAX = 1024;
  for (let i = 0; i < parts.length; ) {
    throwIfAborted(signal);
    const group = parts.slice(i, i + IOV_MAX);
    i += group.length;
    const want = group.reduce((n, b) => n + b.byteLength, 0);
    let bytesWritten: number;
    try {
      ({ bytesWritten } = await handle.writev(group));
    } catch (e) {
      throw toStoreError(e, "write", p, signal);
    }
    if (bytesWritten === want) continue;
    // A short write: the rest one buffer at a time.
    let skip = bytesWritten;
    for (const b of group) {
      if (skip >= b.byteLength) {
        skip -= b.byteLength;
        continue;
      }
      await writeAll(handle, b.subarray(skip), p, signal);
      skip = 0;
    }
  }
}

async function exists(p: string, signal?: AbortSignal): Promise<boolean> {
  try {
    await fsp.lstat(p);
    return true;
  } catch (e) {
    if (errno(e) === "ENOENT") return false;
    throw toStoreError(e, "stat", p, signal);
  }
}

async function eachLimit<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const item = items[next++] as T;
      await fn(item);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

function checkMac(mac: Mac): void {
  if (!(mac instanceof Uint8Array) || mac.byteLength !== MAC_BYTES) {
    throw new TypeError(`a store MAC is ${MAC_BYTES} bytes`);
  }
}

function checkRange(range: Range): void {
  const ok = (n: number) => Number.isSafeInteger(n) && n >= 0;
  if (!ok(range.offset) || !ok(range.length)) {
    throw new RangeError(`invalid range ${range.offset}+${range.length}`);
  }
}

function noRepository(root: string): CofferError {
  return new CofferError("NO_REPOSITORY", `no repository at ${root}`, { root });
}

function errno(e: unknown): string | undefined {
  return typeof e === "object" && e !== null && "code" in e && typeof e.code === "string" ? e.code : undefined;
}

/** CofferErrors pass through; an abort becomes INTERRUPTED; anything else IO naming the path. */
function toStoreError(e: unknown, op: string, p: string, signal?: AbortSignal): unknown {
  if (e instanceof CofferError) return e;
  if (signal?.aborted) return abortError(signal);
  if (e instanceof TypeError || e instanceof RangeError) return e;
  const detail = e instanceof Error ? e.message : String(e);
  return new CofferError("IO", `[fs] ${op} ${p}: ${detail}`, { path: p, errno: errno(e) }, { cause: e });
}
