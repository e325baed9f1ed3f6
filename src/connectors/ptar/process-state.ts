/**
 * What every ptar store of this process shares, per archive path: the LOCK
 * objects (never written to the file), the mutex that serialises commits,
 * and the nonces of the commit lock files held. Kept on globalThis so that
 * every copy of these modules in the process (e.g. src and dist both
 * loaded) shares one state.
 */
import { Mutex } from "./mutex.js";

interface ProcessState {
  /** LOCK objects per archive path. */
  locks: Map<string, Map<string, Uint8Array>>;
  /** Serialises commits of stores of this process on one archive. */
  commitMutexes: Map<string, Mutex>;
  /** Nonces of the commit lock files this process holds. */
  heldLocks: Set<string>;
}

export const processState: ProcessState = (() => {
  const g = globalThis as unknown as Record<symbol, ProcessState | undefined>;
  const key = Symbol.for("coffer.ptar-store.process-state.v1");
  g[key] ??= { locks: new Map(), commitMutexes: new Map(), heldLocks: new Set() };
  return g[key];
})();

/** The LOCK objects of the archive `root`, by MAC hex. */
export function processLocks(root: string): Map<string, Uint8Array> {
  let locks = processState.locks.get(root);
  if (locks === undefined) {
    locks = new Map();
    processState.locks.set(root, locks);
  }
  return locks;
}

/** The mutex serialising this process's commits to the archive `root`. */
export function commitMutex(root: string): Mutex {
  let mutex = processState.commitMutexes.get(root);
  if (mutex === undefined) {
    mutex = new Mutex();
    processState.commitMutexes.set(root, mutex);
  }
  return mutex;
}
