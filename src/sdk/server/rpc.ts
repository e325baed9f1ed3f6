/**
 * gRPC plumbing shared by the plugin services: errors as statuses, unary
 * handlers, writing with backpressure, reading request streams, content
 * split into wire-sized chunks.
 */
import { Metadata, status } from "@grpc/grpc-js";
import type { sendUnaryData, ServerUnaryCall } from "@grpc/grpc-js";
import type { Readable, Writable } from "node:stream";
import { messageText } from "../../connectors/plugin/name-codec.js";
import { MAX_CHUNK } from "../../connectors/plugin/wire.js";
import { CofferError } from "../../util/errors.js";
import type { ErrorCode } from "../../util/errors.js";

/** A failure to report as a gRPC status (grpc-js reads `code`, `details` and `metadata`). */
export class RpcError extends Error {
  readonly code: status;
  readonly details: string;
  readonly metadata: Metadata;
  constructor(code: status, details: string, metadata: Metadata = new Metadata()) {
    // Valid Unicode: grpc-js's encodeURI of the details throws on a lone surrogate (an escaped byte of a name).
    const text = messageText(details);
    super(text);
    this.name = "RpcError";
    this.code = code;
    this.details = text;
    this.metadata = metadata;
  }
}

/** Trailing metadata key carrying a CofferError's code, for coffer hosts (Go hosts ignore it). */
export const ERROR_CODE_METADATA = "coffer-error-code";

const STATUS_OF: Partial<Record<ErrorCode, status>> = {
  USAGE: status.INVALID_ARGUMENT,
  NOT_FOUND: status.NOT_FOUND,
  NO_REPOSITORY: status.NOT_FOUND,
  SNAPSHOT_NOT_FOUND: status.NOT_FOUND,
  PATH_NOT_FOUND: status.NOT_FOUND,
  REPOSITORY_EXISTS: status.ALREADY_EXISTS,
  READ_ONLY: status.PERMISSION_DENIED,
  INTERRUPTED: status.CANCELLED,
  UNSUPPORTED: status.UNIMPLEMENTED,
  CORRUPT: status.DATA_LOSS,
};

/**
 * The status an error travels as: CofferErrors by their code (NOT_FOUND and
 * NO_REPOSITORY -> NOT_FOUND, REPOSITORY_EXISTS -> ALREADY_EXISTS, READ_ONLY
 * -> PERMISSION_DENIED, INTERRUPTED -> CANCELLED, USAGE -> INVALID_ARGUMENT,
 * UNSUPPORTED -> UNIMPLEMENTED, CORRUPT -> DATA_LOSS), aborts as CANCELLED,
 * anything else UNKNOWN; the details are the error's message.
 */
export function toRpcError(e: unknown): RpcError {
  if (e instanceof RpcError) return e;
  if (e instanceof CofferError) {
    const md = new Metadata();
    md.set(ERROR_CODE_METADATA, e.code);
    return new RpcError(STATUS_OF[e.code] ?? status.UNKNOWN, e.message, md);
  }
  if (e instanceof Error && e.name === "AbortError") return new RpcError(status.CANCELLED, e.message || "cancelled");
  const msg = e instanceof Error ? e.message : String(e);
  return new RpcError(status.UNKNOWN, msg || "unknown error");
}

/** A call that can be cancelled by the client (every grpc-js server call). */
export interface CancellableCall {
  readonly cancelled?: boolean;
  on(ev: "cancelled", fn: () => void): unknown;
  removeListener(ev: "cancelled", fn: () => void): unknown;
}

/**
 * The AbortSignals of running calls: each aborts when its call is cancelled
 * or when endAll() says the connection ended. Listeners go when the call
 * settles, so a long-lived plugin serving many calls accumulates none.
 */
export class CallScopes {
  private readonly active = new Set<AbortController>();
  private endReason: unknown;
  private ended = false;

  /** Aborts every running call, and every call started from now on. */
  endAll(reason: unknown): void {
    this.ended = true;
    this.endReason = reason;
    for (const ac of this.active) ac.abort(reason);
    this.active.clear();
  }

  async run<T>(call: CancellableCall, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const ac = new AbortController();
    const onCancel = () => ac.abort(new CofferError("INTERRUPTED", "the call was cancelled"));
    if (this.ended) ac.abort(this.endReason);
    else if (call.cancelled) onCancel();
    call.on("cancelled", onCancel);
    this.active.add(ac);
    try {
      return await fn(ac.signal);
    } finally {
      this.active.delete(ac);
      call.removeListener("cancelled", onCancel);
    }
  }
}

/** A unary handler from an async function given the request and the call's signal; errors become statuses. */
export function unary<Req, Res>(scopes: CallScopes, fn: (req: Req, signal: AbortSignal) => Promise<Res>) {
  return (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>): void => {
    scopes
      .run(call, (signal) => fn(call.request, signal))
      .then(
        (res) => callback(null, res),
        (e: unknown) => callback(toRpcError(e)),
      );
  };
}

/** Ends a streaming call with an error status (once; a call already gone is left alone). */
export function failStream(call: Writable & { cancelled?: boolean }, e: unknown): void {
  if (call.destroyed || call.writableEnded || call.cancelled) return;
  call.emit("error", toRpcError(e));
}

/** Writes one message, waiting while the call's buffer is full; rejects once the call is gone or `signal` aborts. */
export function send(call: Writable, msg: unknown, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) return Promise.reject(signal.reason);
  if (call.destroyed || call.writableEnded) return Promise.reject(new CofferError("INTERRUPTED", "the call is over"));
  if (call.write(msg)) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const done = (err?: unknown) => {
      call.off("drain", onDrain);
      call.off("close", onClose);
      call.off("error", onClose);
      signal?.removeEventListener("abort", onAbort);
      if (err === undefined) resolve();
      else reject(err);
    };
    const onDrain = () => done();
    const onClose = () => done(new CofferError("INTERRUPTED", "the call is over"));
    const onAbort = () => done(signal?.reason);
    call.on("drain", onDrain);
    call.on("close", onClose);
    call.on("error", onClose);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** Settles when `signal` aborts, rejecting with its reason (never unhandled). */
export function whenAborted(signal: AbortSignal): Promise<never> {
  const p = new Promise<never>((_resolve, reject) => {
    if (signal.aborted) reject(signal.reason);
    else signal.addEventListener("abort", () => reject(signal.reason), { once: true });
  });
  p.catch(() => {});
  return p;
}

/** The messages of a request stream, one next() at a time; never destroys the call (unlike for-await's early exit). */
export function messages<T>(call: Readable): AsyncIterator<T> {
  return call.iterator({ destroyOnReturn: false })[Symbol.asyncIterator]() as AsyncIterator<T>;
}

/** Content pieces cut to at most MAX_CHUNK bytes (views, not copies). */
export function* wireChunks(piece: Uint8Array): Generator<Buffer> {
  const b = Buffer.isBuffer(piece) ? piece : Buffer.from(piece.buffer, piece.byteOffset, piece.byteLength);
  for (let off = 0; off < b.byteLength; off += MAX_CHUNK) yield b.subarray(off, Math.min(off + MAX_CHUNK, b.byteLength));
}
