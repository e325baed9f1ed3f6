/**
 * Errors with a stable `code`: every layer throws these, and tests assert on
 * `code`, never on message text. Which exit code each code ends a command
 * with is the CLI's business (src/cli/exit-codes.ts).
 */

export type ErrorCode =
  | "USAGE"
  | "NO_REPOSITORY"
  | "REPOSITORY_EXISTS"
  | "NOT_EMPTY"
  | "EXISTS"
  | "REPOSITORY_WRITE"
  | "LOCKED"
  | "WRONG_PASSPHRASE"
  | "NO_PASSPHRASE"
  | "CORRUPT"
  | "NOT_FOUND"
  | "READ_ONLY"
  | "UNSUPPORTED"
  | "SNAPSHOT_NOT_FOUND"
  | "SNAPSHOT_AMBIGUOUS"
  | "PATH_NOT_FOUND"
  | "UNSAFE_PATH"
  | "INTERRUPTED"
  | "IO"
  | "RECLAIMED"
  | "PLAN_CHANGED";

export class CofferError extends Error {
  readonly code: ErrorCode;
  readonly data: Readonly<Record<string, unknown>>;
  constructor(code: ErrorCode, message: string, data: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "CofferError";
    this.code = code;
    this.data = data;
  }
}

/** Bytes read back from a store failed authentication or could not be decoded. */
export class CorruptError extends CofferError {
  /** What was wrong, without naming the object (the message names it). */
  readonly detail: string;
  constructor(what: string, detail: string, data: Record<string, unknown> = {}) {
    super("CORRUPT", `${what}: ${detail}`, data);
    this.name = "CorruptError";
    this.detail = detail;
  }
}

/** What was wrong with a damaged object, without its name when the error is a CorruptError (for messages that name it already). */
export function corruptDetail(e: unknown): string {
  return e instanceof CorruptError ? e.detail : (e as Error).message;
}

/** An object asked of a store does not exist. */
export class NotFoundError extends CofferError {
  constructor(what: string, data: Record<string, unknown> = {}) {
    super("NOT_FOUND", `${what}: not found`, data);
    this.name = "NotFoundError";
  }
}

export function isCofferError(e: unknown, code?: ErrorCode): e is CofferError {
  return e instanceof CofferError && (code === undefined || e.code === code);
}

export function abortError(signal?: AbortSignal): CofferError {
  const reason = signal?.reason;
  if (reason instanceof CofferError) return reason;
  return new CofferError("INTERRUPTED", "interrupted");
}

export function throwIfAborted(signal?: AbortSignal): void {
  if (signal?.aborted) throw abortError(signal);
}

/** Why a write to a store failed, by errno: what the user is told first. */
const WRITE_FAILURES: Record<string, [string, string]> = {
  ENOSPC: ["repository full", "no space left on device"],
  EDQUOT: ["repository full", "disk quota exceeded"],
  EFBIG: ["repository full", "file too large"],
  EROFS: ["repository not writable", "read-only file system"],
  EIO: ["repository not writable", "input/output error"],
};

function errnoOf(e: unknown): string | undefined {
  for (let x: unknown = e, depth = 0; x !== null && typeof x === "object" && depth < 4; x = (x as { cause?: unknown }).cause, depth++) {
    const data = x instanceof CofferError ? x.data.errno : undefined;
    if (typeof data === "string") return data;
    const code = (x as { code?: unknown }).code;
    if (typeof code === "string" && /^E[A-Z0-9]+$/.test(code)) return code;
  }
  return undefined;
}

/**
 * A failure to write to the repository's store (`location`), as the one
 * error that stops the command: REPOSITORY_WRITE, naming the location and,
 * for ENOSPC, EDQUOT, EFBIG, EROFS and EIO, what it means (`repository
 * full: ...`). Not a source's read error: nothing about the entry being
 * backed up. CofferErrors other than IO (an interrupt, LOCKED, READ_ONLY,
 * one already classified) and programming errors pass through.
 */
export function repositoryWriteError(e: unknown, location: string): unknown {
  if (e instanceof CofferError && e.code !== "IO") return e;
  if (e instanceof TypeError || e instanceof RangeError) return e;
  const errno = errnoOf(e);
  const why = errno !== undefined ? WRITE_FAILURES[errno] : undefined;
  const detail = e instanceof Error ? e.message : String(e);
  const message = why !== undefined ? `${why[0]}: cannot write to ${location} (${errno}: ${why[1]})` : `cannot write to the repository at ${location}: ${detail}`;
  return new CofferError("REPOSITORY_WRITE", message, { location, ...(errno !== undefined ? { errno } : {}), detail }, { cause: e });
}
