/** A FIFO async mutex, for the ptar store's loads, sessions and commits; waiting can be aborted. */
import { abortError, throwIfAborted } from "../../util/errors.js";

export class Mutex {
  #locked = false;
  readonly #waiters: (() => void)[] = [];

  /** Resolves, once the mutex is this caller's, to the function that releases it (idempotent). */
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
