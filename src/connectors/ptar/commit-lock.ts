/**
 * The ptar commit lock: this process's mutex for the archive, then the
 * sidecar lock file `NAME.lock` that serialises commits between processes.
 * The file holds its holder's pid, host, time and a nonce; its mtime is
 * refreshed while held, so a lock whose holder died or hung goes stale and
 * the next writer breaks it.
 */
import { randomBytes } from "node:crypto";
import { promises as fsp } from "node:fs";
import { hostname } from "node:os";
import { CofferError, throwIfAborted } from "../../util/errors.js";
import { errno } from "../local-io.js";
import { io } from "./archive-file.js";
import { commitMutex, processState } from "./process-state.js";
import { processAlive } from "../../util/process.js";
import { sleep } from "../../util/sleep.js";

/** A commit lock not refreshed for this long is stale (its holder is gone or hung). */
const LOCK_STALE_MS = 3 * 60 * 1000;
const LOCK_TOUCH_MS = 20 * 1000;

export interface CommitLock {
  /** Fails with LOCKED when the lock file is no longer ours (broken as stale meanwhile). */
  verify(): Promise<void>;
  release(): Promise<void>;
}

interface LockHolder {
  text: string;
  pid: number | undefined;
  host: string | undefined;
  nonce: string | undefined;
  mtimeMs: number;
}

/**
 * Takes the commit lock of `archive`: this process's mutex for it, then the
 * lock file `lockPath`, waiting up to `waitMs` for another holder (then
 * LOCKED). `tempPath` is a fresh name beside it for writing the lock file.
 */
export async function lockCommit(archive: string, lockPath: string, tempPath: string, waitMs: number, signal?: AbortSignal): Promise<CommitLock> {
  const releaseMutex = await commitMutex(archive).lock(signal);
  try {
    const file = await acquireFileLock(lockPath, tempPath, archive, waitMs, signal);
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

async function acquireFileLock(lockPath: string, tempPath: string, archive: string, waitMs: number, signal?: AbortSignal): Promise<CommitLock> {
  const nonce = randomBytes(16).toString("hex");
  const text = JSON.stringify({ pid: process.pid, host: hostname(), time: Date.now(), nonce });
  const deadline = Date.now() + waitMs;
  let delay = 5;
  for (;;) {
    throwIfAborted(signal);
    // Created whole (LocalIo.createWhole): a writer killed here never leaves an empty lock.
    if (await io.createWhole(lockPath, tempPath, text, signal)) {
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
    throw io.error(e, "read", lockPath);
  }
}

function isStaleHolder(h: LockHolder): boolean {
  if (Date.now() - h.mtimeMs > LOCK_STALE_MS) return true;
  if (h.host !== hostname() || h.pid === undefined) return false;
  // Our own pid: stale unless this process holds it (a dead process's pid reused by us).
  if (h.pid === process.pid) return h.nonce === undefined || !processState.heldLocks.has(h.nonce);
  return !processAlive(h.pid);
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
    throw io.error(e, "rename", lockPath);
  }
  const text = await fsp.readFile(aside, "utf8").catch(() => undefined);
  if (text !== holder.text) await fsp.link(aside, lockPath).catch(() => undefined);
  await fsp.rm(aside, { force: true }).catch(() => undefined);
}

