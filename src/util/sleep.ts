/** Waiting that an abort ends: the backoff of retries and lock polls. */
import { abortError } from "./errors.js";

/** Resolves after `ms`; rejects with INTERRUPTED once `signal` is aborted (at once if it already is). */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) return Promise.reject(abortError(signal));
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(timer);
      reject(abortError(signal));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
