/**
 * How the S3 store sends requests: each one retried with full-jitter
 * exponential backoff on what may pass (5xx, SlowDown and throttling, a
 * dropped or stalled connection), bounded in attempts and in total time,
 * and cancelled by the call's signal; and the SDK's errors turned into
 * CofferErrors that name the bucket and the key.
 */
import { abortError, CofferError, CorruptError } from "../../util/errors.js";
import { sleep } from "../../util/sleep.js";

const MAX_ATTEMPTS = 8;
/** No retry starts once this much time has passed since the first attempt. */
const MAX_RETRY_TIME_MS = 120_000;
const BASE_DELAY_MS = 200;
const MAX_DELAY_MS = 10_000;

const RETRYABLE_NAMES = new Set([
  "SlowDown",
  "Throttling",
  "ThrottlingException",
  "TooManyRequestsException",
  "RequestTimeout",
  "RequestTimeoutException",
  "InternalError",
  "ServiceUnavailable",
  "TimeoutError",
  "ShortBody",
]);
const RETRYABLE_ERRNOS = new Set(["ECONNRESET", "ECONNREFUSED", "ECONNABORTED", "EPIPE", "ETIMEDOUT", "EAI_AGAIN", "EHOSTUNREACH", "ENETUNREACH", "ERR_STREAM_PREMATURE_CLOSE"]);

/** What an SDK error says, for the checks below. */
interface S3Failure {
  name: string;
  status: number | undefined;
  errno: string | undefined;
  message: string;
}

function failure(e: unknown): S3Failure {
  const x = (e ?? {}) as { name?: unknown; Code?: unknown; code?: unknown; message?: unknown; $metadata?: { httpStatusCode?: number } };
  const code = typeof x.Code === "string" ? x.Code : undefined;
  return {
    name: code ?? (typeof x.name === "string" ? x.name : "Error"),
    status: x.$metadata?.httpStatusCode,
    errno: typeof x.code === "string" ? x.code : undefined,
    message: typeof x.message === "string" ? x.message : String(e),
  };
}

/** The S3 error code (NoSuchKey, PreconditionFailed ...) or HTTP status of a failed request, for callers that handle some. */
export function s3Code(e: unknown): { name: string; status: number | undefined } {
  const f = failure(e);
  return { name: f.name, status: f.status };
}

function retryable(e: unknown): boolean {
  const f = failure(e);
  if (f.status !== undefined && (f.status >= 500 || f.status === 429)) return true;
  if (RETRYABLE_NAMES.has(f.name)) return true;
  if (f.errno !== undefined && RETRYABLE_ERRNOS.has(f.errno)) return true;
  return /socket hang up|ECONNRESET|ECONNREFUSED|premature close/i.test(f.message);
}

/** A body that ended before the bytes the response announced: retried as a dropped connection is. */
export class ShortBody extends Error {
  override readonly name = "ShortBody";
}

/**
 * Runs `attempt` until it succeeds, fails with an error that will not pass,
 * or the bounds are reached; the last error is thrown as it is (see
 * s3Error). An abort ends the wait and the request in flight at once.
 */
export async function withRetries<T>(signal: AbortSignal | undefined, attempt: () => Promise<T>): Promise<T> {
  const started = Date.now();
  for (let n = 1; ; n++) {
    if (signal?.aborted) throw abortError(signal);
    try {
      return await attempt();
    } catch (e) {
      if (signal?.aborted) throw abortError(signal);
      if (!retryable(e) || n >= MAX_ATTEMPTS) throw e;
      const delay = Math.random() * Math.min(MAX_DELAY_MS, BASE_DELAY_MS * 2 ** (n - 1));
      if (Date.now() - started + delay > MAX_RETRY_TIME_MS) throw e;
      await sleep(delay, signal);
    }
  }
}

/**
 * The CofferError a failed request (`op` of `key`, or of the bucket when
 * `key` is undefined) ends with: what went wrong in words, naming the
 * location, the bucket and the key.
 */
export function s3Error(e: unknown, where: { display: string; bucket: string }, op: string, key: string | undefined, signal?: AbortSignal): CofferError {
  if (e instanceof CofferError) return e;
  if (signal?.aborted) return abortError(signal);
  const f = failure(e);
  const object = key !== undefined ? `key "${key}" in bucket "${where.bucket}"` : `bucket "${where.bucket}"`;
  const data = { location: where.display, bucket: where.bucket, ...(key !== undefined ? { key } : {}), ...(f.status !== undefined ? { status: f.status } : {}), s3Code: f.name };
  const status = f.status !== undefined ? `, HTTP ${f.status}` : "";
  const name = f.name === "Error" && f.errno !== undefined ? f.errno : f.name;
  switch (f.name) {
    case "NoSuchBucket":
      return new CofferError("IO", `[s3] ${where.display}: bucket "${where.bucket}" does not exist (${op} of ${object})`, data, { cause: e });
    case "AccessDenied":
    case "AllAccessDisabled":
      return new CofferError("IO", `[s3] ${where.display}: access denied: the credentials may not ${op} ${object}`, data, { cause: e });
    case "InvalidAccessKeyId":
    case "SignatureDoesNotMatch":
    case "InvalidToken":
    case "ExpiredToken":
      return new CofferError("IO", `[s3] ${where.display}: the server refused the credentials (${f.name}) for ${op} of ${object}`, data, { cause: e });
    case "InvalidRange":
      return new CorruptError(`[s3] ${object}`, `range not satisfiable (${op})`, data);
  }
  const detail = f.message !== "" && f.message !== "UnknownError" && f.message !== f.name ? `: ${f.message}` : "";
  return new CofferError("IO", `[s3] ${where.display}: ${op} of ${object} failed (${name}${status})${detail}`, data, { cause: e });
}
