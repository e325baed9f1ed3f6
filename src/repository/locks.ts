/**
 * Repository locks (docs/FORMAT.md, "Locks"). A lock is an encoded blob of
 * type LOCK stored under Resource.LOCK with a random name. Backups take a
 * shared lock; anything that deletes takes an exclusive one. A lock is
 * refreshed every REFRESH_MS; one not refreshed for STALE_MS, or held by a
 * dead process on this host, is stale and ignored (and removed by the next
 * exclusive locker).
 */
import { hostname } from "node:os";
import { decode, encode } from "@msgpack/msgpack";
import { Resource } from "../connectors/flags.js";
import type { Store } from "../connectors/store.js";
import { CofferError, isCofferError } from "../util/errors.js";
import { toHex } from "../util/hex.js";
import { BlobType, type Codec } from "./codec.js";
import { randomKey } from "./crypto.js";

export const REFRESH_MS = 60_000;
export const STALE_MS = 5 * 60_000;

export type LockKind = "shared" | "exclusive";

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
    await this.store.delete(Resource.LOCK, this.name).catch(() => {});
  }
}

async function writeLock(store: Store, codec: Codec, name: Uint8Array, info: LockInfo): Promise<void> {
  const raw = encode({ v: 1, kind: info.kind, host: info.host, pid: info.pid, time: info.timeMs, command: info.command });
  await store.put(Resource.LOCK, name, await codec.encode(BlobType.LOCK, name, raw));
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

export function isStale(l: LockInfo, now = Date.now()): boolean {
  if (now - l.timeMs > STALE_MS) return true;
  return l.host === hostname() && l.pid !== process.pid && !pidAlive(l.pid);
}

export async function readLocks(store: Store, codec: Codec): Promise<{ name: Uint8Array; info: LockInfo | null }[]> {
  const out: { name: Uint8Array; info: LockInfo | null }[] = [];
  for await (const name of store.list(Resource.LOCK)) {
    let info: LockInfo | null = null;
    try {
      const o = decode(await codec.decode(BlobType.LOCK, name, await store.get(Resource.LOCK, name))) as Record<string, unknown>;
      if ((o.kind === "shared" || o.kind === "exclusive") && typeof o.host === "string" && typeof o.pid === "number" && typeof o.time === "number") {
        info = { kind: o.kind, host: o.host, pid: o.pid, timeMs: o.time, command: String(o.command ?? "") };
      }
    } catch (e) {
      if (isCofferError(e, "NOT_FOUND")) continue; // released meanwhile
    }
    out.push({ name, info });
  }
  return out;
}

function describe(l: LockInfo | null): string {
  if (l === null) return "an unreadable lock";
  return `${l.kind} lock held by ${l.command || "coffer"} (pid ${l.pid} on ${l.host}, refreshed ${new Date(l.timeMs).toISOString()})`;
}

/** Takes a lock or throws LOCKED naming the holder. */
export async function acquireLock(store: Store, codec: Codec, kind: LockKind, command: string): Promise<Lock> {
  const conflicts = (locks: { name: Uint8Array; info: LockInfo | null }[], self?: Uint8Array) =>
    locks.filter((l) => {
      if (self && toHex(l.name) === toHex(self)) return false;
      if (l.info !== null && isStale(l.info)) return false;
      return kind === "exclusive" || l.info === null || l.info.kind === "exclusive";
    });
  const before = conflicts(await readLocks(store, codec));
  if (before.length > 0) throw new CofferError("LOCKED", `repository is locked: ${describe(before[0]!.info)}`);
  const name = randomKey(32);
  const info: LockInfo = { kind, host: hostname(), pid: process.pid, timeMs: Date.now(), command };
  await writeLock(store, codec, name, info);
  const lock = new Lock(store, codec, name, info);
  // Another process may have locked between our list and our put: look again.
  const after = conflicts(await readLocks(store, codec), name);
  if (after.length > 0) {
    await lock.release();
    throw new CofferError("LOCKED", `repository is locked: ${describe(after[0]!.info)}`);
  }
  if (kind === "exclusive") {
    for (const l of await readLocks(store, codec)) {
      if (l.info !== null && isStale(l.info)) await store.delete(Resource.LOCK, l.name).catch(() => {});
    }
  }
  lock.startRefresh();
  return lock;
}
