/**
 * Waiting out a writable stream's backpressure: after write() returned
 * false, drained() resolves on the next 'drain' and rejects on 'error', or
 * on a 'close' that comes first. Each wait removes all three of its
 * listeners when it settles, so a stream waited on at every backpressure of
 * a long run is left with none (no MaxListenersExceededWarning).
 */
import type { EventEmitter } from "node:events";

/** The next 'drain' of `stream`; `what` names it in the error of a close first ("<what> closed"). */
export function drained(stream: EventEmitter, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const settle = (then: () => void) => {
      stream.off("drain", onDrain);
      stream.off("error", onError);
      stream.off("close", onClose);
      then();
    };
    const onDrain = () => settle(resolve);
    const onError = (e: unknown) => settle(() => reject(e));
    const onClose = () => settle(() => reject(new Error(`${what} closed`)));
    stream.on("drain", onDrain);
    stream.on("error", onError);
    stream.on("close", onClose);
  });
}
