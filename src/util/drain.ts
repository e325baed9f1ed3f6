/**
 * Waiting out a writable stream's backpressure: after write() returned
 * false, drained() resolves on the next 'drain' and rejects on 'error', on
 * a 'close' that comes first, or when its signal aborts. Each wait removes
 * all its listeners when it settles, so a stream (and a signal) waited on
 * at every backpressure of a long run is left with none: no
 * MaxListenersExceededWarning, nothing kept per wait.
 */
import type { EventEmitter } from "node:events";

/** The next 'drain' of `stream`; `what` names it in the error of a close first ("<what> closed"); an abort rejects with the signal's reason. */
export function drained(stream: EventEmitter, what: string, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) return Promise.reject(signal.reason as unknown);
  return new Promise((resolve, reject) => {
    const settle = (then: () => void) => {
      stream.off("drain", onDrain);
      stream.off("error", onError);
      stream.off("close", onClose);
      signal?.removeEventListener("abort", onAbort);
      then();
    };
    const onDrain = () => settle(resolve);
    const onError = (e: unknown) => settle(() => reject(e));
    const onClose = () => settle(() => reject(new Error(`${what} closed`)));
    const onAbort = () => settle(() => reject(signal!.reason as unknown));
    stream.on("drain", onDrain);
    stream.on("error", onError);
    stream.on("close", onClose);
    signal?.addEventListener("abort", onAbort);
  });
}
