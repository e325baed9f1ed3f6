/**
 * Calls on a plugin's connection, and what their failures become: every
 * failure is a CofferError naming the plugin and the call (docs/WIRE.md,
 * "Errors and status codes").
 *
 * - our AbortSignal fired, or CANCELLED: INTERRUPTED;
 * - the connection broke (UNAVAILABLE, or any failure once the process is
 *   gone): IO, saying how the plugin ended (exit code or signal, its last
 *   stderr line) or what it did wrong (garbage on its stdout);
 * - DEADLINE_EXCEEDED: IO "did not answer METHOD within N ms";
 * - RESOURCE_EXHAUSTED on receive: IO "sent a message larger than ...";
 * - other codes: the caller's `codes` map first (the store maps NOT_FOUND,
 *   ALREADY_EXISTS...), else IO with the plugin's message.
 */
import type { Readable } from "node:stream";
import * as grpc from "@grpc/grpc-js";
import { abortError, CofferError, type ErrorCode } from "../../util/errors.js";
import type { PluginProcess } from "./process.js";
import { MAX_MESSAGE } from "./wire.js";

export type Codes = Partial<Record<grpc.status, (message: string) => CofferError>>;

export interface CallContext {
  proc: PluginProcess;
  /** The service definition's method (e.g. services().store.Put). */
  method: grpc.MethodDefinition<unknown, unknown>;
  signal?: AbortSignal | undefined;
  codes?: Codes | undefined;
}

const STATUS_NAME = Object.fromEntries(Object.entries(grpc.status).map(([k, v]) => [v, k])) as Record<number, string>;

function isServiceError(e: unknown): e is grpc.ServiceError {
  return e instanceof Error && typeof (e as { code?: unknown }).code === "number" && "details" in e;
}

function methodName(m: grpc.MethodDefinition<unknown, unknown>): string {
  return m.path.slice(m.path.lastIndexOf("/") + 1);
}

export function pluginError(proc: PluginProcess, code: ErrorCode, message: string, cause?: unknown): CofferError {
  return new CofferError(code, `plugin ${proc.name}: ${message}`, { plugin: proc.name, pid: proc.pid }, cause === undefined ? undefined : { cause });
}

/** How long a failed call waits for the process's exit, so that the message can say how it ended. */
const EXIT_WAIT_MS = 500;

async function settleExit(proc: PluginProcess): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([proc.closed, new Promise((r) => (timer = setTimeout(r, EXIT_WAIT_MS)))]);
  clearTimeout(timer);
}

/** The CofferError for a failed call (a grpc ServiceError or anything else thrown around it). */
export async function callError(ctx: CallContext, e: unknown): Promise<CofferError> {
  const { proc, signal } = ctx;
  const what = methodName(ctx.method);
  if (signal?.aborted) return abortError(signal);
  if (e instanceof CofferError) return e;
  if (!isServiceError(e)) return pluginError(proc, "IO", `${what} failed: ${(e as Error)?.message ?? String(e)}`, e);
  const details = e.details || e.message;
  if (e.code === grpc.status.CANCELLED && !proc.broken) return pluginError(proc, "INTERRUPTED", `${what} was cancelled`, e);
  const lost = e.code === grpc.status.UNAVAILABLE || (proc.broken && [grpc.status.INTERNAL, grpc.status.UNKNOWN, grpc.status.CANCELLED].includes(e.code));
  if (lost) await settleExit(proc);
  if (proc.fault) return pluginError(proc, "IO", `${proc.fault} (during ${what})`, e);
  if (lost && proc.exit) return pluginError(proc, "IO", `the plugin connection broke during ${what}: the plugin ${proc.describeExit()}`, e);
  if ((lost && proc.broken) || e.code === grpc.status.UNAVAILABLE) return pluginError(proc, "IO", `the plugin connection broke during ${what} (${details})`, e);
  if (e.code === grpc.status.DEADLINE_EXCEEDED) return pluginError(proc, "IO", `did not answer ${what} within ${proc.timeoutMs} ms`, e);
  if (e.code === grpc.status.RESOURCE_EXHAUSTED && /larger than max/i.test(details)) {
    return pluginError(proc, "IO", `sent a message larger than the wire's limit of ${MAX_MESSAGE} bytes during ${what} (${details})`, e);
  }
  const mapped = ctx.codes?.[e.code as grpc.status];
  if (mapped) return mapped(details);
  if (e.code === grpc.status.UNIMPLEMENTED) return pluginError(proc, "UNSUPPORTED", `does not implement ${what} (${details})`, e);
  return pluginError(proc, "IO", `${what} failed: ${details} (${STATUS_NAME[e.code] ?? e.code})`, e);
}

/** A unary call with the process's deadline; rejects with callError's mapping. */
export async function unary<Res>(ctx: CallContext, request: unknown, o: { timeoutMs?: number | undefined; deadline?: Date | undefined } = {}): Promise<Res> {
  const { proc, method, signal } = ctx;
  if (signal?.aborted) throw abortError(signal);
  const deadline = o.deadline ?? new Date(Date.now() + (o.timeoutMs ?? proc.timeoutMs));
  let call: grpc.ClientUnaryCall | undefined;
  const onAbort = () => call?.cancel();
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    return await new Promise<Res>((resolve, reject) => {
      call = proc.client.makeUnaryRequest(
        method.path,
        method.requestSerialize,
        method.responseDeserialize as (b: Buffer) => Res,
        request,
        new grpc.Metadata(),
        { deadline },
        (err, res) => (err ? reject(err) : resolve(res as Res)),
      );
    });
  } catch (e) {
    throw await callError(ctx, e);
  } finally {
    signal?.removeEventListener("abort", onAbort);
  }
}

/**
 * Messages of a readable call, pulled one at a time (flow control applies:
 * the call is paused while `highWater` messages wait). next() resolves
 * undefined at the end and rejects with the call's error, raw, once every
 * message received before the error has been taken.
 */
export class Pull<T> {
  private readonly queue: T[] = [];
  private ended = false;
  private error: unknown;
  private failed = false;
  private waiter: { resolve: (v: T | undefined) => void; reject: (e: unknown) => void } | undefined;

  constructor(
    private readonly stream: Readable,
    private readonly highWater = 8,
  ) {
    stream.on("data", (m: T) => {
      const w = this.waiter;
      if (w) {
        this.waiter = undefined;
        w.resolve(m);
        return;
      }
      this.queue.push(m);
      if (this.queue.length >= this.highWater) stream.pause();
    });
    stream.on("end", () => {
      this.ended = true;
      this.flush();
    });
    stream.on("error", (e: unknown) => {
      if (this.failed) return;
      this.failed = true;
      this.error = e;
      this.flush();
    });
  }

  /** Messages still buffered in the stream come before its error. */
  private get drained(): boolean {
    return this.queue.length === 0 && (this.ended || this.stream.readableLength === 0);
  }

  private flush(): void {
    const w = this.waiter;
    if (!w || !this.drained) {
      if (w && this.failed) this.stream.resume();
      return;
    }
    if (!this.failed && !this.ended) return;
    this.waiter = undefined;
    if (this.failed) w.reject(this.error);
    else w.resolve(undefined);
  }

  next(): Promise<T | undefined> {
    if (this.waiter) return Promise.reject(new Error("Pull.next() called while another is pending"));
    if (this.queue.length > 0) {
      const m = this.queue.shift()!;
      if (this.queue.length < this.highWater) this.stream.resume();
      return Promise.resolve(m);
    }
    if (this.failed && this.drained) return Promise.reject(this.error);
    if (this.ended && !this.failed) return Promise.resolve(undefined);
    this.stream.resume();
    return new Promise((resolve, reject) => (this.waiter = { resolve, reject }));
  }
}

/** Writes one message, waiting for 'drain' when the call asks to; rejects if the call ends first. */
export async function write(call: grpc.ClientWritableStream<unknown> | grpc.ClientDuplexStream<unknown, unknown>, msg: unknown): Promise<void> {
  if (call.write(msg)) return;
  await new Promise<void>((resolve, reject) => {
    const done = (e?: unknown) => {
      call.off("drain", onDrain);
      call.off("error", onEnd);
      call.off("status", onStatus);
      call.off("close", onEnd);
      if (e === undefined) resolve();
      else reject(e);
    };
    const onDrain = () => done();
    const onEnd = (e?: unknown) => done(e ?? new Error("the call ended"));
    const onStatus = (s: grpc.StatusObject) => done(s.code === grpc.status.OK ? new Error("the call ended") : Object.assign(new Error(s.details), s));
    call.on("drain", onDrain);
    call.on("error", onEnd);
    call.on("status", onStatus);
    call.on("close", onEnd);
  });
}

/** Splits content into pieces of at most `max` bytes (views, no copies). */
export function* pieces(b: Uint8Array, max: number): Generator<Uint8Array> {
  for (let at = 0; at < b.byteLength; at += max) yield b.subarray(at, Math.min(b.byteLength, at + max));
}
