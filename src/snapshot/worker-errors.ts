/**
 * Errors across worker threads: what a worker posts for an error it caught
 * (toWorkerError) and the main thread's error made of it again
 * (fromWorkerError), a CorruptError, NotFoundError or CofferError with its
 * code and data, so that damage a worker finds stays typed.
 */
import { CofferError, CorruptError, type ErrorCode, NotFoundError } from "../util/errors.js";

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
