/**
 * The SFTP Store (type "sftp"): a repository on an SSH host, laid out as
 * the fs store's (src/connectors/fs/layout.ts): CONFIG, packfiles/XX/MAC,
 * states/XX/MAC, locks/MAC, tmp/. Every object is written whole to
 * tmp/<random>.tmp, fsynced where the server can (`fsync@openssh.com`),
 * then renamed into place with `posix-rename@openssh.com`, so a reader sees
 * it whole or not at all; CONFIG is renamed with plain SFTP rename, which
 * refuses an existing target, so two creates cannot both win, and
 * replaceConfig() renames over it under a lock. Puts hold
 * their data, so that one whose connection drops is written again whole;
 * staged puts (stage()) write as the bytes come, and hold none.
 */
import { randomBytes } from "node:crypto";
import * as posix from "node:path/posix";
import type { SFTPWrapper } from "ssh2";
import { mapLimit } from "../../util/concurrency.js";
import { CofferError, CorruptError, isCofferError, NotFoundError, throwIfAborted } from "../../util/errors.js";
import { equalBytes, fromHex, toHex } from "../../util/hex.js";
import { Resource, resourceName } from "../flags.js";
import { checkRange, checkResource, collectPut, configChanged, macHex, noRepository, rangeWithin, refuseIfReadOnly, repositoryExists, storeMode } from "../store-checks.js";
import type { CallOptions, Mac, Range, StagedPut, StageOptions, Store } from "../store.js";
import { hasExtension, readAt, SftpPool, sftpOps as ops, SftpStatus, sftpStatus, writeAt } from "./connection.js";
import type { SftpSettings } from "./params.js";

const CONFIG = "CONFIG";
const TMP = "tmp";
/** replaceConfig()'s lock in tmp/: a temp file's name, so that one a dead run left is swept as they are. */
const CONFIG_LOCK = "config.replacing.tmp";
const MAC_NAME = /^[0-9a-f]{64}$/;
const FANOUT_NAME = /^[0-9a-f]{2}$/;
const RESOURCE_DIR: Record<Resource, { dir: string; fanout: boolean }> = {
  [Resource.PACKFILE]: { dir: "packfiles", fanout: true },
  [Resource.STATE]: { dir: "states", fanout: true },
  [Resource.LOCK]: { dir: "locks", fanout: false },
};
const LAYOUT_DIRS: readonly string[] = [TMP, ...Object.values(RESOURCE_DIR).map((r) => r.dir)];
/** Directory listings in flight at once in list() and size(). */
const LIST_CONCURRENCY = 8;
/** Temp files older than this are a dead writer's, removed by open(). */
const STALE_TEMP_MS = 3_600_000;
const S_IFMT = 0o170000;
const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;

export interface SftpStoreOptions {
  readOnly?: boolean | undefined;
}

export class SftpStore implements Store {
  readonly origin: string;
  readonly type = "sftp";
  readonly root: string;
  readonly flags = 0;
  readonly #s: SftpSettings;
  readonly #pool: SftpPool;
  readonly #readOnly: boolean;
  /** Directories known to exist, so that a put does not try to make them again. */
  readonly #dirs = new Set<string>();

  /** Store.connections: one read at a time per SSH connection (each read pipelined). */
  readonly connections: number;

  constructor(settings: SftpSettings, opts: SftpStoreOptions = {}) {
    this.#s = settings;
    this.origin = settings.host;
    this.root = `${settings.where}/${settings.path}`;
    this.#pool = new SftpPool(settings);
    this.#readOnly = opts.readOnly === true;
    this.connections = settings.connections;
  }

  async create(config: Uint8Array, opts: CallOptions = {}): Promise<void> {
    const { signal } = opts;
    throwIfAborted(signal);
    refuseIfReadOnly(this.#readOnly, "sftp", this.root, "create");
    await this.#pool.run(async (sftp) => {
      await this.#mkdirs(sftp, this.#s.path);
      if (await this.#exists(sftp, this.#path(CONFIG))) throw repositoryExists(this.root);
      await this.#checkEmpty(sftp);
      for (const d of LAYOUT_DIRS) await this.#mkdirs(sftp, this.#path(d));
    }, signal);
    const tmp = await this.#writeTemp(config, signal);
    await this.#pool.run(async (sftp) => {
      try {
        await ops.renameNoReplace(sftp, tmp, this.#path(CONFIG));
      } catch (e) {
        await ops.unlink(sftp, tmp).catch(() => undefined);
        if (sftpStatus(e) !== undefined && (await this.#exists(sftp, this.#path(CONFIG)))) {
          // A run whose answer was lost may have renamed it already: the config holds a random ID, so equal bytes are ours.
          if (Buffer.from(await this.#readWhole(sftp, this.#path(CONFIG), signal)).equals(config)) return;
          throw repositoryExists(this.root);
        }
        throw this.#error(e, "rename to", CONFIG);
      }
    }, signal);
  }

  async open(opts: CallOptions = {}): Promise<Uint8Array> {
    const { signal } = opts;
    throwIfAborted(signal);
    const config = await this.#pool.run(async (sftp) => {
      try {
        return await this.#readWhole(sftp, this.#path(CONFIG), signal);
      } catch (e) {
        if (sftpStatus(e) === SftpStatus.NO_SUCH_FILE) throw noRepository(this.root);
        throw this.#error(e, "read", CONFIG);
      }
    }, signal);
    if (!this.#readOnly) await this.#sweepTemps(signal).catch(() => undefined);
    return config;
  }

  /**
   * Replaces CONFIG (Store.replaceConfig) by a temp file renamed over it
   * with `posix-rename@openssh.com`, under the lock tmp/config.replacing.tmp
   * (created exclusively), so that two `coffer key` runs never both compare
   * CONFIG with what they read and then rename over it.
   */
  async replaceConfig(config: Uint8Array, expected: Uint8Array, opts: CallOptions = {}): Promise<void> {
    const { signal } = opts;
    throwIfAborted(signal);
    refuseIfReadOnly(this.#readOnly, "sftp", this.root, "replace the configuration");
    const configPath = this.#path(CONFIG);
    const readConfig = (sftp: SFTPWrapper) =>
      this.#readWhole(sftp, configPath, signal).catch((e: unknown) => {
        if (sftpStatus(e) === SftpStatus.NO_SUCH_FILE) throw noRepository(this.root);
        throw isCofferError(e) ? e : this.#error(e, "read", CONFIG);
      });
    const release = await this.#lockConfigReplace(signal);
    try {
      if (!equalBytes(await this.#pool.run(readConfig, signal), expected)) throw configChanged(this.root);
      const tmp = await this.#writeTemp(config, signal);
      await this.#pool.run(async (sftp) => {
        try {
          if (!hasExtension(sftp, "posix-rename@openssh.com")) throw new CofferError("UNSUPPORTED", `[sftp] ${this.root}: the server lacks posix-rename@openssh.com, so the configuration cannot be replaced atomically`, { root: this.root });
          await ops.renameReplace(sftp, tmp, configPath);
        } catch (e) {
          // No temp file and CONFIG already the new one: a run whose answer was lost renamed it.
          if (sftpStatus(e) === SftpStatus.NO_SUCH_FILE && !(await this.#exists(sftp, tmp)) && equalBytes(await readConfig(sftp), config)) return;
          await ops.unlink(sftp, tmp).catch(() => undefined);
          throw this.#error(e, "rename to", CONFIG);
        }
      }, signal);
    } finally {
      await release();
    }
  }

  /** Takes the lock of replaceConfig(); the function returned releases it. LOCKED while another holds it (an abandoned one goes with the stale temp files, after an hour). */
  async #lockConfigReplace(signal?: AbortSignal): Promise<() => Promise<void>> {
    const lock = this.#path(posix.join(TMP, CONFIG_LOCK));
    const token = Buffer.from(`${randomBytes(16).toString("hex")}\n`);
    await this.#pool.run(async (sftp) => {
      await this.#mkdirs(sftp, this.#path(TMP));
      let h: Buffer;
      try {
        h = await ops.open(sftp, lock, "wx");
      } catch (e) {
        // Ours already, when a try whose answer was lost created it.
        const held = await this.#readWhole(sftp, lock, signal).catch(() => undefined);
        if (held !== undefined && equalBytes(held, token)) return;
        if (sftpStatus(e) === SftpStatus.FAILURE || held !== undefined) {
          throw new CofferError("LOCKED", `[sftp] another process is replacing the configuration of ${this.root} (${TMP}/${CONFIG_LOCK}); if none is, remove that file`, { root: this.root });
        }
        throw this.#error(e, "create", posix.join(TMP, CONFIG_LOCK));
      }
      try {
        await writeAt(sftp, h, [token], 0, signal);
      } finally {
        await ops.close(sftp, h).catch(() => undefined);
      }
    }, signal);
    return async () => void (await this.#pool.run((sftp) => ops.unlink(sftp, lock)).catch(() => undefined));
  }

  async ping(opts: CallOptions = {}): Promise<void> {
    const { signal } = opts;
    throwIfAborted(signal);
    await this.#pool.run(async (sftp) => {
      const st = await ops.stat(sftp, this.#s.path).catch((e: unknown) => {
        if (sftpStatus(e) === SftpStatus.NO_SUCH_FILE) throw noRepository(this.root);
        throw this.#error(e, "stat", "");
      });
      if ((st.mode & S_IFMT) !== S_IFDIR) throw new CofferError("IO", `${this.root}: not a directory`, { root: this.root });
    }, signal);
  }

  async mode(opts: CallOptions = {}): Promise<number> {
    throwIfAborted(opts.signal);
    return storeMode(this.#readOnly);
  }

  /** Bytes of CONFIG and every object, from the directory listings (no stat per object). */
  async size(opts: CallOptions = {}): Promise<number> {
    const { signal } = opts;
    throwIfAborted(signal);
    let total = await this.#pool.run(async (sftp) => {
      try {
        return (await ops.stat(sftp, this.#path(CONFIG))).size;
      } catch (e) {
        if (sftpStatus(e) === SftpStatus.NO_SUCH_FILE) return 0;
        throw this.#error(e, "stat", CONFIG);
      }
    }, signal);
    for (const resource of Object.values(Resource)) {
      for (const o of await this.#objects(resource, signal)) total += o.size;
    }
    return total;
  }

  async *list(resource: Resource, opts: CallOptions = {}): AsyncIterable<Mac> {
    const { signal } = opts;
    throwIfAborted(signal);
    for (const o of await this.#objects(resource, signal)) {
      throwIfAborted(signal);
      yield fromHex(o.name);
    }
  }

  async put(resource: Resource, mac: Mac, data: Uint8Array | AsyncIterable<Uint8Array>, opts: CallOptions = {}): Promise<number> {
    const { signal } = opts;
    throwIfAborted(signal);
    refuseIfReadOnly(this.#readOnly, "sftp", this.root, "put");
    const target = this.#objectPath(resource, mac);
    const bytes = await collectPut(data, signal);
    const tmp = await this.#writeTemp(bytes, signal);
    await this.#pool.run(async (sftp) => {
      try {
        await this.#renameInto(sftp, tmp, target);
      } catch (e) {
        await ops.unlink(sftp, tmp).catch(() => undefined);
        throw e;
      }
    }, signal).catch((e: unknown) => {
      throw this.#error(e, "rename to", posix.relative(this.#s.path, target));
    });
    return bytes.byteLength;
  }

  /**
   * Writes go to a temp file as they come, each at its offset, through a
   * handle of the connection that runs it (opened by name when that
   * connection has none): a write whose connection drops is written again at
   * the same offset on a fresh one, and what the server acknowledged is in
   * the file already, so nothing is held here. commit() fsyncs, closes and
   * renames into place as put() does.
   */
  async stage(resource: Resource, opts: StageOptions = {}): Promise<StagedPut> {
    const { signal } = opts;
    throwIfAborted(signal);
    refuseIfReadOnly(this.#readOnly, "sftp", this.root, "put");
    checkResource(resource);
    const tmp = await this.#pool.run(async (sftp) => {
      const { tmp, h } = await this.#openTemp(sftp);
      await ops.close(sftp, h);
      return tmp;
    }, signal);
    const rel = posix.relative(this.#s.path, tmp);
    let size = 0;
    let state: "open" | "done" = "open";
    /** The temp file's handle on the connection that last wrote it. */
    let held: { sftp: SFTPWrapper; h: Buffer } | undefined;
    /** Runs `fn` on the temp file, opened read-write on the connection it runs on; drops the file on failure. */
    const onTemp = async (op: string, fn: (sftp: SFTPWrapper, h: Buffer) => Promise<void>, sig?: AbortSignal) => {
      try {
        await this.#pool.run(async (sftp) => {
          if (held?.sftp !== sftp) {
            const old = held;
            held = undefined;
            if (old) await ops.close(old.sftp, old.h).catch(() => undefined);
            held = { sftp, h: await ops.open(sftp, tmp, "r+") };
          }
          await fn(sftp, held.h);
        }, sig);
      } catch (e) {
        await drop();
        throw this.#error(e, op, rel);
      }
    };
    const release = async () => {
      const old = held;
      held = undefined;
      if (old) await ops.close(old.sftp, old.h);
    };
    const drop = async () => {
      state = "done";
      await release().catch(() => undefined);
      await this.#pool.run((sftp) => ops.unlink(sftp, tmp)).catch(() => undefined);
    };
    return {
      write: async (parts) => {
        if (state !== "open") throw new CofferError("IO", `[sftp] staged write to ${this.root}/${rel} after its end`);
        const at = size;
        await onTemp("write", (sftp, h) => writeAt(sftp, h, parts, at, signal), signal);
        size += parts.reduce((n, p) => n + p.byteLength, 0);
      },
      commit: async (mac, o = {}) => {
        if (state !== "open") throw new CofferError("IO", `[sftp] staged object ${this.root}/${rel} committed after its end`);
        const target = this.#objectPath(resource, mac);
        await onTemp("fsync", async (sftp, h) => {
          if (hasExtension(sftp, "fsync@openssh.com")) await ops.fsync(sftp, h);
          await release();
        }, o.signal);
        state = "done";
        await this.#pool.run(async (sftp) => {
          try {
            await this.#renameInto(sftp, tmp, target);
          } catch (e) {
            await ops.unlink(sftp, tmp).catch(() => undefined);
            throw e;
          }
        }, o.signal).catch((e: unknown) => {
          throw this.#error(e, "rename to", posix.relative(this.#s.path, target));
        });
        return size;
      },
      abort: async () => {
        if (state === "open") await drop();
      },
    };
  }

  async get(resource: Resource, mac: Mac, range?: Range, opts: CallOptions = {}): Promise<Uint8Array> {
    const { signal } = opts;
    throwIfAborted(signal);
    if (range !== undefined) checkRange(range);
    const file = this.#objectPath(resource, mac);
    const hex = toHex(mac);
    const what = `${resourceName(resource)} ${hex}`;
    return this.#pool.run(async (sftp) => {
      let h: Buffer;
      try {
        h = await ops.open(sftp, file, "r");
      } catch (e) {
        if (sftpStatus(e) === SftpStatus.NO_SUCH_FILE) throw new NotFoundError(what, { resource, mac: hex });
        throw this.#error(e, "open", posix.relative(this.#s.path, file));
      }
      try {
        const size = (await ops.fstat(sftp, h)).size;
        const { offset, length } = rangeWithin(range, size, what, { resource, mac: hex });
        const out = new Uint8Array(length);
        await readAt(sftp, h, out, offset, (at) => new CorruptError(what, `short read at ${at} (${size} bytes expected)`), signal);
        return out;
      } catch (e) {
        throw isCofferError(e) ? e : this.#error(e, "read", posix.relative(this.#s.path, file));
      } finally {
        await ops.close(sftp, h).catch(() => undefined);
      }
    }, signal);
  }

  async delete(resource: Resource, mac: Mac, opts: CallOptions = {}): Promise<void> {
    const { signal } = opts;
    throwIfAborted(signal);
    refuseIfReadOnly(this.#readOnly, "sftp", this.root, "delete");
    const file = this.#objectPath(resource, mac);
    await this.#pool.run(async (sftp) => {
      try {
        await ops.unlink(sftp, file);
      } catch (e) {
        if (sftpStatus(e) === SftpStatus.NO_SUCH_FILE) throw new NotFoundError(`${resourceName(resource)} ${toHex(mac)}`, { resource, mac: toHex(mac) });
        throw this.#error(e, "delete", posix.relative(this.#s.path, file));
      }
    }, signal);
  }

  async close(): Promise<void> {
    await this.#pool.close();
  }

  #path(rel: string): string {
    return posix.join(this.#s.path, rel);
  }

  #objectPath(resource: Resource, mac: Mac): string {
    const hex = macHex(mac);
    checkResource(resource);
    const layout = RESOURCE_DIR[resource];
    return layout.fanout ? this.#path(posix.join(layout.dir, hex.slice(0, 2), hex)) : this.#path(posix.join(layout.dir, hex));
  }

  /** An SFTP failure as an IO error naming the object (`rel`, under the root); CofferErrors pass through. */
  #error(e: unknown, op: string, rel: string): unknown {
    if (isCofferError(e) || e instanceof TypeError || e instanceof RangeError) return e;
    const where = rel === "" ? this.root : `${this.root}/${rel}`;
    const status = sftpStatus(e);
    return new CofferError("IO", `[sftp] ${op} ${where}: ${(e as Error).message}`, { path: where, ...(status === SftpStatus.PERMISSION_DENIED ? { errno: "EACCES" } : {}) }, { cause: e });
  }

  async #exists(sftp: SFTPWrapper, p: string): Promise<boolean> {
    try {
      await ops.stat(sftp, p);
      return true;
    } catch (e) {
      if (sftpStatus(e) === SftpStatus.NO_SUCH_FILE) return false;
      throw this.#error(e, "stat", posix.relative(this.#s.path, p));
    }
  }

  /** mkdir -p: makes `dir` and its missing parents. */
  async #mkdirs(sftp: SFTPWrapper, dir: string): Promise<void> {
    if (this.#dirs.has(dir)) return;
    try {
      await ops.mkdir(sftp, dir);
    } catch (e) {
      const status = sftpStatus(e);
      if (status === SftpStatus.NO_SUCH_FILE && posix.dirname(dir) !== dir) {
        await this.#mkdirs(sftp, posix.dirname(dir));
        await ops.mkdir(sftp, dir).catch((e2: unknown) => this.#mustBeDir(sftp, dir, e2));
      } else if (status !== undefined) await this.#mustBeDir(sftp, dir, e);
      else throw e;
    }
    this.#dirs.add(dir);
  }

  /** After a mkdir of `dir` failed with `e`: fine if `dir` is a directory (made meanwhile, or there before); otherwise `e`. */
  async #mustBeDir(sftp: SFTPWrapper, dir: string, e: unknown): Promise<void> {
    const st = await ops.stat(sftp, dir).catch(() => undefined);
    if (st !== undefined && (st.mode & S_IFMT) === S_IFDIR) return;
    if (st !== undefined) throw new CofferError("IO", `cannot create a repository at ${this.root}: ${dir} exists and is not a directory`, { path: dir });
    throw this.#error(e, "mkdir", posix.relative(this.#s.path, dir));
  }

  /** Renames `tmp` onto `target` (replacing it: the same MAC is the same content), making the fan-out directory when missing. */
  async #renameInto(sftp: SFTPWrapper, tmp: string, target: string): Promise<void> {
    const rename = hasExtension(sftp, "posix-rename@openssh.com") ? ops.renameReplace : ops.renameNoReplace;
    try {
      await rename(sftp, tmp, target);
    } catch (e) {
      if (sftpStatus(e) !== SftpStatus.NO_SUCH_FILE) {
        // Plain rename refuses an existing target: that object is already stored.
        if (rename === ops.renameNoReplace && (await this.#exists(sftp, target))) return void (await ops.unlink(sftp, tmp).catch(() => undefined));
        throw e;
      }
      // No temp file but the target: a run whose answer was lost renamed it already.
      if (!(await this.#exists(sftp, tmp)) && (await this.#exists(sftp, target))) return;
      await this.#mkdirs(sftp, posix.dirname(target));
      await rename(sftp, tmp, target);
    }
  }

  /** Creates a fresh temp file (and tmp/ when missing); its path and open handle. */
  async #openTemp(sftp: SFTPWrapper): Promise<{ tmp: string; h: Buffer }> {
    const tmp = this.#path(posix.join(TMP, `${randomBytes(16).toString("hex")}.tmp`));
    try {
      return { tmp, h: await ops.open(sftp, tmp, "wx") };
    } catch (e) {
      if (sftpStatus(e) !== SftpStatus.NO_SUCH_FILE) throw this.#error(e, "create", posix.relative(this.#s.path, tmp));
      await this.#mkdirs(sftp, this.#path(TMP));
      return { tmp, h: await ops.open(sftp, tmp, "wx") };
    }
  }

  /** Writes `data` whole to a fresh temp file, fsynced where the server can; returns its path. A failed write leaves none. */
  async #writeTemp(data: Uint8Array, signal?: AbortSignal): Promise<string> {
    return this.#pool.run(async (sftp) => {
      const { tmp, h } = await this.#openTemp(sftp);
      try {
        await writeAt(sftp, h, [data], 0, signal);
        if (hasExtension(sftp, "fsync@openssh.com")) await ops.fsync(sftp, h);
        await ops.close(sftp, h);
      } catch (e) {
        await ops.close(sftp, h).catch(() => undefined);
        await ops.unlink(sftp, tmp).catch(() => undefined);
        throw isCofferError(e) ? e : this.#error(e, "write", posix.relative(this.#s.path, tmp));
      }
      return tmp;
    }, signal);
  }

  async #readWhole(sftp: SFTPWrapper, p: string, signal?: AbortSignal): Promise<Uint8Array> {
    const h = await ops.open(sftp, p, "r");
    try {
      const size = (await ops.fstat(sftp, h)).size;
      const out = new Uint8Array(size);
      await readAt(sftp, h, out, 0, (at) => new CorruptError(p, `short read at ${at} (${size} bytes expected)`), signal);
      return out;
    } finally {
      await ops.close(sftp, h).catch(() => undefined);
    }
  }

  /** Entries of `dir` with their attributes; none when it does not exist. */
  async #readdir(dir: string, signal?: AbortSignal): Promise<{ name: string; mode: number; size: number; mtime: number }[]> {
    return this.#pool.run(async (sftp) => {
      try {
        return (await ops.readdir(sftp, dir)).map((e) => ({ name: e.filename, mode: e.attrs.mode, size: e.attrs.size, mtime: e.attrs.mtime }));
      } catch (e) {
        if (sftpStatus(e) === SftpStatus.NO_SUCH_FILE) return [];
        throw this.#error(e, "list", posix.relative(this.#s.path, dir));
      }
    }, signal);
  }

  /** The object files of a resource: regular files with a 64-hex name in the right place, with their sizes. */
  async #objects(resource: Resource, signal?: AbortSignal): Promise<{ name: string; size: number }[]> {
    checkResource(resource);
    const layout = RESOURCE_DIR[resource];
    const base = this.#path(layout.dir);
    const dirs: { dir: string; prefix: string | undefined }[] = layout.fanout
      ? (await this.#readdir(base, signal)).filter((e) => (e.mode & S_IFMT) === S_IFDIR && FANOUT_NAME.test(e.name)).map((e) => ({ dir: posix.join(base, e.name), prefix: e.name }))
      : [{ dir: base, prefix: undefined }];
    const listed = await mapLimit(dirs, LIST_CONCURRENCY, async ({ dir, prefix }) =>
      (await this.#readdir(dir, signal)).filter((e) => (e.mode & S_IFMT) === S_IFREG && MAC_NAME.test(e.name) && (prefix === undefined || e.name.startsWith(prefix))),
    );
    return listed.flat().map((e) => ({ name: e.name, size: e.size }));
  }

  /** Removes temp files older than an hour: a dead writer's. */
  async #sweepTemps(signal?: AbortSignal): Promise<void> {
    const dir = this.#path(TMP);
    const cutoff = (Date.now() - STALE_TEMP_MS) / 1000;
    const stale = (await this.#readdir(dir, signal)).filter((e) => e.name.endsWith(".tmp") && (e.mode & S_IFMT) === S_IFREG && e.mtime < cutoff);
    await mapLimit(stale, LIST_CONCURRENCY, (e) => this.#pool.run((sftp) => ops.unlink(sftp, posix.join(dir, e.name)).catch(() => undefined), signal));
  }

  /** Refuses a directory that holds anything but the empty directories of the layout (as the fs store does). */
  async #checkEmpty(sftp: SFTPWrapper): Promise<void> {
    const layout = new Set(LAYOUT_DIRS);
    const found: string[] = [];
    for (const e of await ops.readdir(sftp, this.#s.path).catch((err: unknown) => Promise.reject(this.#error(err, "list", "")))) {
      const isDir = (e.attrs.mode & S_IFMT) === S_IFDIR;
      if (isDir && layout.has(e.filename)) {
        const inside = await ops.readdir(sftp, this.#path(e.filename)).catch(() => [{}]);
        if (inside.length === 0) continue;
        found.push(`${e.filename}/ (${inside.length} entries)`);
      } else found.push(isDir ? `${e.filename}/` : e.filename);
    }
    if (found.length === 0) return;
    const shown = found.sort().slice(0, 3).join(", ") + (found.length > 3 ? `, and ${found.length - 3} more` : "");
    throw new CofferError("NOT_EMPTY", `cannot create a repository at ${this.root}: the directory is not empty (it holds ${shown}); give an empty or new directory`, { root: this.root });
  }
}
