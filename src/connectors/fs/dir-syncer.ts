/**
 * Group commit for the fs store's directory fsyncs: callers arriving while
 * a directory is being synced share the next fsync of that directory
 * instead of each issuing their own.
 */
import * as path from "node:path";
import type { LocalIo } from "../local-io.js";

interface Waiter {
  resolve: () => void;
  reject: (e: unknown) => void;
}

export class DirSyncer {
  readonly #queues = new Map<string, Waiter[]>();
  readonly #io: LocalIo;

  constructor(io: LocalIo) {
    this.#io = io;
  }

  /** Resolves once an fsync of `dir` that started after this call has ended. */
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

  /** After mkdir -p created `created` (its first new directory) on the way to `leaf`: fsyncs the new entries' parents. */
  async syncCreated(created: string | undefined, leaf: string): Promise<void> {
    if (created === undefined) return;
    const parents: string[] = [];
    for (let dir = leaf; dir !== path.dirname(created); dir = path.dirname(dir)) {
      parents.push(path.dirname(dir));
      if (dir === path.dirname(dir)) break;
    }
    await Promise.all(parents.map((p) => this.sync(p)));
  }

  async #drain(dir: string, queue: Waiter[]): Promise<void> {
    while (queue.length > 0) {
      const batch = queue.splice(0);
      try {
        await this.#io.fsyncDir(dir);
        for (const w of batch) w.resolve();
      } catch (e) {
        for (const w of batch) w.reject(e);
      }
    }
    this.#queues.delete(dir);
  }
}
