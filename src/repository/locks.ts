/**
 * Repository locks (docs/FORMAT.md, "Locks"). A lock is an encoded blob of
 * type LOCK stored under Resource.LOCK with a random name. Backups take a
 * shared lock; anything that deletes takes an exclusive one, but
 * `maintenance`, whose lock excludes only exclusive and other maintenance
 * locks (docs/FORMAT.md, "Garbage collection"). A lock is
 * refreshed every REFRESH_MS; one not refreshed for STALE_MS, or held by a
 * dead process on this host, is stale and ignored (and removed by the next
 * exclusive or maintenance locker).
 *
 * A lock that cannot be deleted on release (append-only credentials, which
 * may put but not delete: docs/CLI.md) is rewritten as a stale marker, its
 * time 0, and left: it is released for every reader at once, on any host,
 * and the next locker with delete rights sweeps it. Failing the run for it
 * would lose a backup that is stored whole.
 *
 * A lock that cannot be read (damaged: it does not authenticate or decode)
 * says nothing of its holder, so it counts as exclusive while it may still
 * be live: until the object is STALE_MS old by its modification time (a
 * live holder rewrites its lock every REFRESH_MS, and puts are atomic, so
 * an old unreadable lock has no live holder). Then any locker ignores it,
 * removes it and warns. A store that cannot tell an object's age (only
 * stores with local files can: Store.localPath) keeps it blocking; the
 * LOCKED message names it so that it can be removed by hand.
 */
import { lstat } from "node:fs/promises";
import { hostname } from "node:os";
import { encode } from "@msgpack/msgpack";
import { Resource } from "../connectors/flags.js";
import type { Store } from "../connectors/store.js";
import { CofferError, CorruptError, isCofferError, repositoryWriteError } from "../util/errors.js";
import { toHex } from "../util/hex.js";
import { decodeBounded } from "../util/msgpack.js";
import { BlobType, type Codec } from "./codec.js";
import { randomKey } from "./crypto.js";
import { processAlive } from "../util/process.js";

export const REFRESH_MS = 60_000;
export const STALE_MS = 5 * 60_000;

export type LockKind = "shared" | "exclusive" | "maintenance";

export interface LockInfo {
  kind: LockKind;
  host: string;
  pid: number;
  timeMs: number;
  command: string;
}

export class Lock {
  private timer: NodeJS.Timeout | undefined;
  private released = false;
  private refreshing: Promise<void> = Promise.resolve();
  constructor(
    private readonly store: Store,
    private readonly codec: Codec,
    readonly name: Uint8Array,
    readonly info: LockInfo,
    private readonly onWarning?: (m: string) => void,
  ) {}

  startRefresh(): void {
    this.timer = setInterval(() => {
      if (this.released) return;
      this.refreshing = this.refreshing.then(() =>
        this.released ? undefined : writeLock(this.store, this.codec, this.name, { ...this.info, timeMs: Date.now() }).catch(() => {}),
      );
    }, REFRESH_MS);
    this.timer.unref();
  }

  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    if (this.timer) clearInterval(this.timer);
    // A refresh already writing would put the lock back after our delete.
    await this.refreshing;
    try {
      await this.store.delete(Resource.LOCK, this.name);
    } catch (e) {
      if (isCofferError(e, "NOT_FOUND")) return;
      await this.leaveStaleMarker(e);
    }
  }

  /** See the top of this file: a lock that cannot be deleted is left stale. */
  private async leaveStaleMarker(why: unknown): Promise<void> {
    const where = `lock ${toHex(this.name)}`;
    const reason = (why as Error).message ?? String(why);
    try {
      await writeLock(this.store, this.codec, this.name, { ...this.info, timeMs: 0 });
      this.onWarning?.(`${where} could not be removed (${reason}): left as a stale marker, which the next run with delete rights sweeps`);
    } catch {
      this.onWarning?.(`${where} could not be removed (${reason}) nor marked stale: it counts as held until ${STALE_MS / 60_000} minutes after its last refresh`);
    }
  }
}

async function writeLock(store: Store, codec: Codec, name: Uint8Array, info: LockInfo): Promise<void> {
  const raw = encode({ v: 1, kind: info.kind, host: info.host, pid: info.pid, time: info.timeMs, command: info.command });
  await store.put(Resource.LOCK, name, await codec.encode(BlobType.LOCK, name, raw));
}


export function isStale(l: LockInfo, now = Date.now()): boolean {
  if (now - l.timeMs > STALE_MS) return true;
  return l.host === hostname() && l.pid !== process.pid && !processAlive(l.pid);
}

/**
 * Whether a lock that `maintenance` waits for (a holdout) has ended: it is
 * not among `current`, or its holder is a dead process on this host, or it
 * was refreshed longer ago than a stale lock by more than `graceMs` (the
 * clock skew tolerated). An unreadable lock ends only once it is removed.
 */
export function holdoutEnded(lockHex: string, current: readonly LockEntry[], graceMs: number, now = Date.now()): boolean {
  const l = current.find((x) => toHex(x.name) === lockHex);
  if (!l) return true;
  if (l.info === null) return false;
  if (now - l.info.timeMs > STALE_MS + graceMs) return true;
  return l.info.host === hostname() && l.info.pid !== process.pid && !processAlive(l.info.pid);
}

export interface LockEntry {
  name: Uint8Array;
  /** null: the lock cannot be read (see `damage`). */
  info: LockInfo | null;
  /** Why an unreadable lock cannot be read. */
  damage?: string;
  /** Where an unreadable lock is: its file, or `lock ID`. */
  where?: string;
  /** An unreadable lock's modification time (ms), where the store can tell. */
  mtimeMs?: number | undefined;
}

/**
 * The holder a decoded lock record names, or null when it is not a lock
 * record: a pid of 0 or less would name a process group to kill(2), and a
 * time that is not an integer would never go stale.
 */
function lockInfoOf(o: unknown): LockInfo | null {
  if (typeof o !== "object" || o === null) return null;
  const r = o as Record<string, unknown>;
  if (r.kind !== "shared" && r.kind !== "exclusive" && r.kind !== "maintenance") return null;
  if (typeof r.host !== "string" || typeof r.pid !== "number" || !Number.isSafeInteger(r.pid) || r.pid <= 0) return null;
  if (typeof r.time !== "number" || !Number.isSafeInteger(r.time)) return null;
  return { kind: r.kind, host: r.host, pid: r.pid, timeMs: r.time, command: String(r.command ?? "") };
}

export async function readLocks(store: Store, codec: Codec): Promise<LockEntry[]> {
  const out: LockEntry[] = [];
  for await (const name of store.list(Resource.LOCK)) {
    let info: LockInfo | null = null;
    let damage = "not a lock record";
    try {
      const raw = await codec.decode(BlobType.LOCK, name, await store.get(Resource.LOCK, name));
      info = lockInfoOf(decodeBounded(raw, (why) => new CorruptError(`lock blob ${toHex(name).slice(0, 16)}`, `undecodable (${why})`)));
    } catch (e) {
      if (isCofferError(e, "NOT_FOUND")) continue; // released meanwhile
      damage = (e as Error).message ?? String(e);
    }
    if (info !== null) out.push({ name, info });
    else {
      const file = store.localPath?.(Resource.LOCK, name);
      const mtimeMs = file === undefined ? undefined : await lstat(file).then((st) => st.mtimeMs, () => undefined);
      out.push({ name, info, damage, where: file ?? `lock ${toHex(name)}`, mtimeMs });
    }
  }
  return out;
}

/** Whether an unreadable lock is old enough to have no live holder (see the top of this file). */
function isStaleUnreadable(l: LockEntry, now = Date.now()): boolean {
  return l.info === null && l.mtimeMs !== undefined && now - l.mtimeMs > STALE_MS;
}

function describe(l: LockEntry): string {
  const i = l.info;
  if (i === null) {
    const age =
      l.mtimeMs !== undefined
        ? `modified ${new Date(l.mtimeMs).toISOString()}; ignored and removed once ${STALE_MS / 60_000} minutes old`
        : "the store cannot tell its age: remove it if no coffer process is using the repository";
    return `an unreadable lock ${l.where} (${l.damage}; ${age})`;
  }
  return `${i.kind} lock held by ${i.command || "coffer"} (pid ${i.pid} on ${i.host}, refreshed ${new Date(i.timeMs).toISOString()})`;
}

/** Takes a lock or throws LOCKED naming the holder; `onWarning` hears of unreadable stale locks removed, and of this lock if it cannot be removed on release. */
export async function acquireLock(store: Store, codec: Codec, kind: LockKind, command: string, onWarning?: (m: string) => void): Promise<Lock> {
  const conflicts = (locks: LockEntry[], self?: Uint8Array) =>
    locks.filter((l) => {
      if (self && toHex(l.name) === toHex(self)) return false;
      if (l.info !== null ? isStale(l.info) : isStaleUnreadable(l)) return false;
      if (kind === "exclusive" || l.info === null || l.info.kind === "exclusive") return true;
      return kind === "maintenance" && l.info.kind === "maintenance";
    });
  const seen = await readLocks(store, codec);
  const before = conflicts(seen);
  if (before.length > 0) throw new CofferError("LOCKED", `repository is locked: ${describe(before[0]!)}`, { lock: toHex(before[0]!.name) });
  const name = randomKey(32);
  const info: LockInfo = { kind, host: hostname(), pid: process.pid, timeMs: Date.now(), command };
  await writeLock(store, codec, name, info).catch((e: unknown) => {
    throw repositoryWriteError(e, store.root);
  });
  const lock = new Lock(store, codec, name, info, onWarning);
  // Another process may have locked between our list and our put: look again.
  const after = conflicts(await readLocks(store, codec), name);
  if (after.length > 0) {
    await lock.release();
    throw new CofferError("LOCKED", `repository is locked: ${describe(after[0]!)}`, { lock: toHex(after[0]!.name) });
  }
  // Damage, not a holder: whoever locks next removes it.
  for (const l of seen.filter((x) => isStaleUnreadable(x))) {
    await store.delete(Resource.LOCK, l.name).then(
      () => onWarning?.(`removed an unreadable lock ${l.where} (${l.damage}), last modified ${new Date(l.mtimeMs!).toISOString()}`),
      () => onWarning?.(`ignored an unreadable lock ${l.where} (${l.damage}), last modified ${new Date(l.mtimeMs!).toISOString()}: it could not be removed`),
    );
  }
  // Lockers that delete sweep stale locks, stale markers among them (see the top of this file).
  if (kind === "exclusive" || kind === "maintenance") {
    for (const l of await readLocks(store, codec)) {
      if (l.info !== null && isStale(l.info)) await store.delete(Resource.LOCK, l.name).catch(() => {});
    }
  }
  lock.startRefresh();
  return lock;
}
