/**
 * The built-in local-directory Store (type "fs"), laid out as layout.ts says.
 *
 * Every write goes to tmp/<random>, is fsynced, renamed into place, and the
 * target directory is fsynced; concurrent directory fsyncs are batched
 * (dir-syncer.ts). So a reader sees a whole object or none, even across a
 * crash. Fan-out directories are created on demand.
 */
import { randomBytes } from "node:crypto";
import { promises as fsp } from "node:fs";
import type { FileHandle } from "node:fs/promises";
import { hostname } from "node:os";
import * as path from "node:path";
import { mapLimit } from "../../util/concurrency.js";
import { abortError, CofferError, CorruptError, isCofferError, NotFoundError, throwIfAborted } from "../../util/errors.js";
import { LocationFlag, Resource, resourceName } from "../flags.js";
import { errno, linkUnsupported, LocalIo, sweepStaleTemps } from "../local-io.js";
import { equalBytes, fromHex, toHex } from "../../util/hex.js";
import { checkRange, configChanged, noRepository, rangeWithin, refuseIfReadOnly, repositoryExists, storeMode } from "../store-checks.js";
import type { CallOptions, Mac, Range, StagedPut, StageOptions, Store } from "../store.js";
import { lockConfigReplace } from "./config-lock.js";
import { DirectWrites } from "./direct-writer.js";
import { DirSyncer } from "./dir-syncer.js";
import { CONFIG, LAYOUT_DIRS, objectFiles, objectPath, readdirOrEmpty, TMP } from "./layout.js";
import { type CachedReader, ReadCache } from "./read-cache.js";

export interface FsStoreOptions {
  /** Open for reading only: put(), delete() and create() reject with READ_ONLY. */
  readOnly?: boolean | undefined;
}

/** Bound on concurrent stat() calls in size(). */
const STAT_CONCURRENCY = 32;

const io = new LocalIo("fs");

export class FsStore implements Store {
  readonly origin: string;
  readonly type = "fs";
  readonly root: string;
  readonly flags = LocationFlag.LOCALFS;
  readonly #readOnly: boolean;
  readonly #dirSync = new DirSyncer(io);
  readonly #readers = new ReadCache();
  readonly #direct = new DirectWrites(io);
  /** Writes done with O_DIRECT (DirectWriter), for diagnostics and tests. */
  readonly direct = this.#direct.count;

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
    const createdRoot = await io.run("mkdir", this.root, signal, () => fsp.mkdir(this.root, { recursive: true })).catch((e: unknown) => {
      if (isCofferError(e) && (e.data.errno === "EEXIST" || e.data.errno === "ENOTDIR")) throw new CofferError("IO", `cannot create a repository at ${this.root}: it exists and is not a directory`, { path: this.root, errno: e.data.errno });
      throw e;
    });
    if (await exists(configPath, signal)) throw repositoryExists(this.root);
    if (createdRoot === undefined) await this.#checkEmpty(signal);
    for (const dir of LAYOUT_DIRS) {
      const p = path.join(this.root, dir);
      await io.run("mkdir", p, signal, () => fsp.mkdir(p, { recursive: true }));
    }
    throwIfAborted(signal);
    const { tmp } = await this.#writeTemp(config, signal);
    try {
      throwIfAborted(signal);
      // link() refuses to replace: two concurrent create() calls cannot both win.
      await fsp.link(tmp, configPath).catch(async (e: unknown) => {
        if (errno(e) === "EEXIST") throw repositoryExists(this.root);
        if (!linkUnsupported(e)) throw e;
        if (await exists(configPath, signal)) throw repositoryExists(this.root);
        await fsp.rename(tmp, configPath);
      });
    } catch (e) {
      throw io.error(e, "write", configPath, signal);
    } finally {
      await fsp.rm(tmp, { force: true }).catch(() => undefined);
    }
    await this.#dirSync.syncCreated(createdRoot, this.root);
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
      throw io.error(e, "read", configPath, signal);
    }
    if (!this.#readOnly) await sweepStaleTemps(path.join(this.root, TMP), () => true);
    throwIfAborted(signal);
    return config;
  }

  /**
   * Under the replace lock (config-lock.ts): CONFIG compared with `expected`,
   * the new blob written to an fsynced temp file, renamed over CONFIG, and
   * the root directory fsynced, as every object is written.
   */
  async replaceConfig(config: Uint8Array, expected: Uint8Array, opts: CallOptions = {}): Promise<void> {
    const { signal } = opts;
    throwIfAborted(signal);
    this.#checkWritable("replace the configuration");
    const configPath = path.join(this.root, CONFIG);
    if (!(await exists(configPath, signal))) throw noRepository(this.root);
    const release = await lockConfigReplace(io, this.root, signal);
    try {
      let current: Uint8Array;
      try {
        current = new Uint8Array(await fsp.readFile(configPath));
      } catch (e) {
        const code = errno(e);
        if (code === "ENOENT" || code === "ENOTDIR") throw noRepository(this.root);
        throw io.error(e, "read", configPath, signal);
      }
      if (!equalBytes(current, expected)) throw configChanged(this.root);
      const { tmp } = await this.#writeTemp(config, signal);
      try {
        throwIfAborted(signal);
        await io.run("rename", configPath, signal, () => fsp.rename(tmp, configPath));
      } catch (e) {
        await fsp.rm(tmp, { force: true }).catch(() => undefined);
        throw io.error(e, "write", configPath, signal);
      }
      // Replaced: from here an abort no longer undoes it.
      await this.#dirSync.sync(this.root);
    } finally {
      await release();
    }
  }

  async ping(opts: CallOptions = {}): Promise<void> {
    const { signal } = opts;
    throwIfAborted(signal);
    const st = await io.statRoot(this.root, signal);
    if (!st.isDirectory()) throw new CofferError("IO", `${this.root}: not a directory`, { path: this.root });
    throwIfAborted(signal);
  }

  async mode(opts: CallOptions = {}): Promise<number> {
    throwIfAborted(opts.signal);
    return storeMode(this.#readOnly);
  }

  /** Bytes of CONFIG and every object (temp files not counted). One stat per object: not cheap on huge stores. */
  async size(opts: CallOptions = {}): Promise<number> {
    const { signal } = opts;
    throwIfAborted(signal);
    const files: string[] = [path.join(this.root, CONFIG)];
    for (const resource of Object.values(Resource)) {
      for await (const file of objectFiles(io, this.root, resource, signal)) files.push(file.path);
    }
    const sizes = await mapLimit(files, STAT_CONCURRENCY, async (file) => {
      throwIfAborted(signal);
      try {
        return (await fsp.stat(file)).size;
      } catch (e) {
        if (errno(e) !== "ENOENT") throw io.error(e, "stat", file, signal);
        return 0; // deleted meanwhile
      }
    });
    return sizes.reduce((a, b) => a + b, 0);
  }

  async *list(resource: Resource, opts: CallOptions = {}): AsyncIterable<Mac> {
    const { signal } = opts;
    throwIfAborted(signal);
    for await (const file of objectFiles(io, this.root, resource, signal)) {
      throwIfAborted(signal);
      yield fromHex(file.name);
    }
  }

  async put(resource: Resource, mac: Mac, data: Uint8Array | AsyncIterable<Uint8Array>, opts: CallOptions = {}): Promise<number> {
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
    let direct = opts.direct === true && this.#direct.available ? this.#direct.open(tmp, handle) : null;
    const drop = async () => {
      state = "done";
      direct = this.#direct.end(direct);
      await handle.close().catch(() => undefined);
      await fsp.rm(tmp, { force: true }).catch(() => undefined);
    };
    return {
      write: async (parts) => {
        if (state !== "open") throw new CofferError("IO", `[fs] staged write to ${tmp} after its end`);
        try {
          if (direct) await direct.write(parts, signal);
          else await io.writevFully(handle, parts, tmp, signal);
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
          direct = this.#direct.end(direct);
          await io.run("fsync", tmp, o.signal, () => handle.sync());
          await io.run("close", tmp, o.signal, () => handle.close());
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

  /** Renames the fsynced temp file `tmp` into place as object `mac` (removing it on failure), then fsyncs the directory. */
  async #install(tmp: string, resource: Resource, mac: Mac, signal?: AbortSignal): Promise<void> {
    const target = objectPath(this.root, resource, mac);
    const dir = path.dirname(target);
    try {
      throwIfAborted(signal);
      const created = await io.run("mkdir", dir, signal, () => fsp.mkdir(dir, { recursive: true }));
      throwIfAborted(signal);
      await io.run("rename", target, signal, () => fsp.rename(tmp, target));
      await this.#dirSync.syncCreated(created, dir);
    } catch (e) {
      await fsp.rm(tmp, { force: true }).catch(() => undefined);
      throw io.error(e, "write", target, signal);
    }
    // The object is in place: from here an abort no longer undoes the put.
    await this.#dirSync.sync(dir);
  }

  async get(resource: Resource, mac: Mac, range?: Range, opts: CallOptions = {}): Promise<Uint8Array> {
    const { signal } = opts;
    throwIfAborted(signal);
    if (range !== undefined) checkRange(range);
    const file = objectPath(this.root, resource, mac);
    const hex = toHex(mac);
    const what = `${resourceName(resource)} ${hex}`;
    let r: CachedReader;
    try {
      r = await this.#readers.acquire(file);
    } catch (e) {
      const code = errno(e);
      if (code === "ENOENT" || code === "ENOTDIR") throw new NotFoundError(what, { resource, mac: hex });
      throw io.error(e, "open", file, signal);
    }
    try {
      const size = r.size;
      const { offset, length } = rangeWithin(range, size, what, { resource, mac: hex });
      const out = new Uint8Array(length);
      await io.readFully(r.fh, out, offset, file, (at) => new CorruptError(what, `short read at ${at} (${size} bytes expected)`), signal);
      return out;
    } catch (e) {
      throw io.error(e, "read", file, signal);
    } finally {
      await this.#readers.release(r);
    }
  }

  async delete(resource: Resource, mac: Mac, opts: CallOptions = {}): Promise<void> {
    const { signal } = opts;
    throwIfAborted(signal);
    this.#checkWritable("delete");
    const file = objectPath(this.root, resource, mac);
    void this.#readers.evict(file);
    try {
      await fsp.unlink(file);
    } catch (e) {
      const code = errno(e);
      if (code === "ENOENT" || code === "ENOTDIR") {
        throw new NotFoundError(`${resourceName(resource)} ${toHex(mac)}`, { resource, mac: toHex(mac) });
      }
      throw io.error(e, "delete", file, signal);
    }
    await this.#dirSync.sync(path.dirname(file));
  }

  /** Closes the cached read handles (one still in use closes when its read ends). */
  async close(): Promise<void> {
    await this.#readers.close();
  }

  localPath(resource: Resource, mac: Mac): string {
    return objectPath(this.root, resource, mac);
  }

  #checkWritable(op: string): void {
    refuseIfReadOnly(this.#readOnly, "fs", this.root, op);
  }

  /**
   * Refuses a directory that holds anything but the empty directories of
   * the layout (which a create that failed before writing CONFIG leaves):
   * another repository's packfiles without its CONFIG, or anyone's files.
   */
  async #checkEmpty(signal?: AbortSignal): Promise<void> {
    const layout = new Set(LAYOUT_DIRS);
    const found: string[] = [];
    for (const e of await readdirOrEmpty(io, this.root, signal)) {
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

  /** Stream data into a fresh fsynced temp file; returns its path and size. Removes it on failure. */
  async #writeTemp(
    data: Uint8Array | AsyncIterable<Uint8Array>,
    signal?: AbortSignal,
  ): Promise<{ tmp: string; size: number }> {
    const { tmp, handle } = await this.#openTemp(signal);
    let size = 0;
    try {
      if (data instanceof Uint8Array) {
        await io.writeFully(handle, data, null, tmp, signal);
        size = data.byteLength;
      } else {
        for await (const piece of data) {
          throwIfAborted(signal);
          await io.writeFully(handle, piece, null, tmp, signal);
          size += piece.byteLength;
        }
      }
      throwIfAborted(signal);
      await io.run("fsync", tmp, signal, () => handle.sync());
      await io.run("close", tmp, signal, () => handle.close());
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
      if (errno(e) !== "ENOENT") throw io.error(e, "create", tmp, signal);
      await io.run("mkdir", tmpDir, signal, () => fsp.mkdir(tmpDir, { recursive: true }));
      return { tmp, handle: await io.run("create", tmp, signal, () => fsp.open(tmp, "wx")) };
    }
  }
}

async function exists(p: string, signal?: AbortSignal): Promise<boolean> {
  try {
    await fsp.lstat(p);
    return true;
  } catch (e) {
    if (errno(e) === "ENOENT") return false;
    throw io.error(e, "stat", p, signal);
  }
}
