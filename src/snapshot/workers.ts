/**
 * Starting the backup and restore worker threads (backup/chunk-pool.ts,
 * restore/pool.ts) and forced collections inside them; their errors cross
 * postMessage as worker-errors.ts has them. Heap limits: a small young
 * generation makes V8 collect often, which frees the (external) buffers of
 * chunks a worker is done with promptly; a worker keeps almost nothing
 * alive (chunk bytes live outside the V8 heap), so a small old generation
 * only stops its heap from growing needlessly (docs/PERFORMANCE.md, "Other
 * measurements").
 */
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import { Collector } from "../util/gc.js";
import { fromWorkerError, toWorkerError } from "./worker-errors.js";

const WORKER_LIMITS = { maxYoungGenerationSizeMb: 4, maxOldGenerationSizeMb: 48 };

/**
 * Called by a worker thread after handling `bytes` of chunk data: every
 * COLLECT_EVERY bytes it asks V8 for a young-generation collection, which
 * frees the buffers of the chunks it is done with. V8 only counts them
 * loosely (they are outside its heap) and would let a worker hold tens of
 * MiB of dead buffers. A no-op unless Node runs with --expose-gc (the
 * launcher, bin/coffer.js, sets it).
 */
export function collectAfter(bytes: number): void {
  collector.after(bytes);
}
const collector = new Collector(32 << 20, "minor");

/** The compiled worker script at `name` below this module's folder, or null (e.g. when running from TypeScript sources). */
export function workerScript(name: string): URL | null {
  const url = new URL(`./${name}`, import.meta.url);
  return url.protocol === "file:" && existsSync(fileURLToPath(url)) ? url : null;
}

/**
 * Starts `n` workers and waits for each one's first message (it is ready);
 * if one fails to start, all are terminated. Then each worker's messages go
 * to `onMessage`, and an error or abnormal exit to `onFail` (an error thrown
 * out of a worker as its class again: see fromWorkerError).
 */
export async function startWorkers<M>(
  url: URL,
  n: number,
  workerData: (i: number) => unknown,
  onMessage: (i: number, m: M) => void,
  onFail: (e: Error) => void,
): Promise<Worker[]> {
  const workers: Worker[] = [];
  const ready: Promise<void>[] = [];
  for (let i = 0; i < n; i++) {
    const w = new Worker(url, { workerData: workerData(i), resourceLimits: WORKER_LIMITS });
    workers.push(w);
    ready.push(
      new Promise<void>((res, rej) => {
        w.once("message", () => res());
        w.once("error", rej);
      }),
    );
  }
  try {
    await Promise.all(ready);
  } catch (e) {
    await Promise.all(workers.map((w) => w.terminate()));
    throw e;
  }
  workers.forEach((w, i) => {
    w.on("message", (m: M) => onMessage(i, m));
    w.on("error", (e) => onFail(fromWorkerError(toWorkerError(e))));
    w.on("exit", (code) => {
      if (code !== 0) onFail(new Error(`worker exited with code ${code}`));
    });
  });
  return workers;
}
