/**
 * Shared plumbing of the backup and restore worker threads (chunk-pool.ts,
 * restore/pool.ts): starting them, forced collections inside them, and
 * errors as they cross postMessage. Heap limits: a small young generation makes V8 collect
 * often, which frees the (external) buffers of chunks a worker is done with
 * promptly; a worker keeps almost nothing alive (chunk bytes live outside
 * the V8 heap), so a small old generation only stops its heap from growing
 * needlessly (docs/PERFORMANCE.md, "Other measurements").
 */
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import { CofferError, CorruptError, type ErrorCode, NotFoundError } from "../util/errors.js";
import { Collector } from "../util/gc.js";

export const WORKER_LIMITS = { maxYoungGenerationSizeMb: 4, maxOldGenerationSizeMb: 48 };

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

/**
 * An error as a worker posts it. Structured cloning keeps only an Error's
 * message and stack, so a CofferError's code and data, a CorruptError's
 * detail and a system error's errno fields travel as plain fields.
 */
export interface WorkerError {
  name: string;
  message: string;
  /** Set for a CofferError (then `code` is its ErrorCode). */
  coffer?: true;
  code?: string;
  data?: Record<string, unknown>;
  detail?: string;
  errno?: number;
  syscall?: string;
  path?: string;
  stack?: string;
}

const COFFER_ERRORS = new Set(["CofferError", "CorruptError", "NotFoundError"]);

/** What a worker posts for an error it caught: see WorkerError. */
export function toWorkerError(e: unknown): WorkerError {
  if (!(e instanceof Error)) return { name: "Error", message: String(e) };
  const x = e as Error & { code?: unknown; data?: unknown; detail?: unknown; errno?: unknown; syscall?: unknown; path?: unknown };
  const w: WorkerError = { name: x.name, message: x.message };
  // An error thrown out of a worker reaches the main thread with its own fields but not its class: recognised by name.
  if (e instanceof CofferError || (COFFER_ERRORS.has(x.name) && typeof x.code === "string")) w.coffer = true;
  if (typeof x.code === "string") w.code = x.code;
  if (typeof x.data === "object" && x.data !== null) w.data = cloneable(x.data as Record<string, unknown>);
  if (typeof x.detail === "string") w.detail = x.detail;
  if (typeof x.errno === "number") w.errno = x.errno;
  if (typeof x.syscall === "string") w.syscall = x.syscall;
  if (typeof x.path === "string") w.path = x.path;
  if (x.stack !== undefined) w.stack = x.stack;
  return w;
}

/** A CofferError's data as structured cloning can post it (fields that cannot be cloned are left out). */
function cloneable(data: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(data)) {
    try {
      structuredClone(v);
      out[k] = v;
    } catch {
      // a function or a handle: only meaningful in the thread that made it
    }
  }
  return out;
}

/** The main thread's error for what a worker posted: a CorruptError, NotFoundError or CofferError again, with its code and data. */
export function fromWorkerError(w: WorkerError): Error {
  const e = revive(w);
  if (w.stack !== undefined) e.stack = w.stack; // where it was thrown, in the worker
  return e;
}

function revive(w: WorkerError): Error {
  const data = w.data ?? {};
  // A CorruptError's message is "WHAT: DETAIL", a NotFoundError's "WHAT: not found" (src/util/errors.ts).
  if (w.coffer && w.name === "CorruptError" && w.detail !== undefined && w.message.endsWith(`: ${w.detail}`)) {
    return new CorruptError(w.message.slice(0, -(w.detail.length + 2)), w.detail, data);
  }
  if (w.coffer && w.name === "NotFoundError" && w.message.endsWith(": not found")) return new NotFoundError(w.message.slice(0, -": not found".length), data);
  if (w.coffer && w.code !== undefined) return new CofferError(w.code as ErrorCode, w.message, data);
  const e = new Error(w.message) as Error & Partial<Pick<WorkerError, "code" | "errno" | "syscall" | "path">>;
  if (w.name !== "Error") e.name = w.name;
  if (w.code !== undefined) e.code = w.code;
  if (w.errno !== undefined) e.errno = w.errno;
  if (w.syscall !== undefined) e.syscall = w.syscall;
  if (w.path !== undefined) e.path = w.path;
  return e;
}

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
