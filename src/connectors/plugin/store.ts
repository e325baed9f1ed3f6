/**
 * A store plugin as an ordinary Store (docs/WIRE.md, "Store"). Every method
 * is its RPC; content moves in chunks of at most MAX_CHUNK bytes. Put is a
 * client stream whose first message carries only mac and type (Go's SDK
 * reads the content from the messages after it), Get a server stream.
 *
 * Statuses, as the Store contract wants them: NOT_FOUND -> NotFoundError
 * (Open: NO_REPOSITORY, as is FAILED_PRECONDITION), ALREADY_EXISTS on
 * Create -> REPOSITORY_EXISTS, PERMISSION_DENIED -> READ_ONLY, OUT_OF_RANGE
 * on Get -> CORRUPT, CANCELLED -> INTERRUPTED, UNAVAILABLE -> IO naming the
 * plugin and how it ended (rpc.ts). Go plugins return plain errors, which
 * arrive as UNKNOWN with the error's text: an UNKNOWN whose text is Go's
 * os.ErrNotExist ("no such file or directory", "file does not exist") is
 * taken as NOT_FOUND for Get, Delete and Open.
 *
 * A ranged Get must give exactly the bytes asked for: fewer or more is
 * CORRUPT (a short read is never returned silently). Read-only stores
 * (ConnectorOptions.readOnly) are enforced here, since the wire's Init has
 * no such option: mode() drops WRITE, and create/put/delete reject with
 * READ_ONLY before anything is sent or read.
 */
import * as grpc from "@grpc/grpc-js";
import { abortError, CofferError, NotFoundError, throwIfAborted } from "../../util/errors.js";
import { toHex } from "../../util/hex.js";
import { type Resource, resourceName, StoreMode } from "../flags.js";
import type { ConnectorOptions } from "../records.js";
import type { CallOptions, Mac, Range, Store } from "../store.js";
import { closeConnector, type InitAnswer, method, PluginConnector, type PluginConnectorSpec, startConnector } from "./connector.js";
import type { PluginProcess } from "./process.js";
import { callError, type CallContext, type Codes, pieces, pluginError, Pull, unary, write } from "./rpc.js";
import { MAX_CHUNK, services } from "./wire.js";

const GO_NOT_EXIST = /no such file or directory|file does not exist/i;

export class PluginStore extends PluginConnector implements Store {
  private readonly service = services().store;

  private constructor(
    proc: PluginProcess,
    init: InitAnswer,
    private readonly readOnly: boolean,
  ) {
    super(proc, init);
  }

  /** Starts the plugin and calls Init{proto, config}. */
  static async start(spec: PluginConnectorSpec, proto: string, config: Record<string, string>, opts: ConnectorOptions): Promise<PluginStore> {
    const { proc, init } = await startConnector(spec, opts, services().store, { proto, config });
    return new PluginStore(proc, init, opts.readOnly === true);
  }

  private ctx(name: string, opts?: CallOptions, codes?: Codes): CallContext {
    return { proc: this.proc, method: method(this.service, name), signal: opts?.signal, codes };
  }

  private refuseWrite(what: string): void {
    if (this.readOnly) throw new CofferError("READ_ONLY", `plugin ${this.proc.name}: the store is open read-only; ${what} refused`, { plugin: this.proc.name });
  }

  private err(code: "READ_ONLY" | "NO_REPOSITORY" | "REPOSITORY_EXISTS" | "CORRUPT", message: string): (details: string) => CofferError {
    return (details) => pluginError(this.proc, code, `${message} (${details})`);
  }

  private notFound(resource: Resource, mac: Mac): (details: string) => CofferError {
    return () => new NotFoundError(`plugin ${this.proc.name}: ${resourceName(resource)} ${toHex(mac)}`, { plugin: this.proc.name });
  }

  private objectCodes(resource: Resource, mac: Mac): Codes {
    const nf = this.notFound(resource, mac);
    return {
      [grpc.status.NOT_FOUND]: nf,
      [grpc.status.PERMISSION_DENIED]: this.err("READ_ONLY", "the store refused the write"),
      [grpc.status.OUT_OF_RANGE]: this.err("CORRUPT", `range past the end of ${resourceName(resource)} ${toHex(mac)}`),
      [grpc.status.UNKNOWN]: (d) => (GO_NOT_EXIST.test(d) ? nf(d) : pluginError(this.proc, "IO", `${d} (UNKNOWN)`)),
    };
  }

  async create(config: Uint8Array, opts?: CallOptions): Promise<void> {
    throwIfAborted(opts?.signal);
    this.refuseWrite("create");
    await unary(
      this.ctx("Create", opts, {
        [grpc.status.ALREADY_EXISTS]: this.err("REPOSITORY_EXISTS", "a repository already exists there"),
        [grpc.status.PERMISSION_DENIED]: this.err("READ_ONLY", "the store refused to create a repository"),
      }),
      { config: Buffer.from(config.buffer, config.byteOffset, config.byteLength) },
    );
  }

  async open(opts?: CallOptions): Promise<Uint8Array> {
    const none = this.err("NO_REPOSITORY", "no repository there");
    const res = await unary<{ config: Buffer }>(
      this.ctx("Open", opts, {
        [grpc.status.NOT_FOUND]: none,
        [grpc.status.FAILED_PRECONDITION]: none,
        [grpc.status.UNKNOWN]: (d) => (GO_NOT_EXIST.test(d) ? none(d) : pluginError(this.proc, "IO", `Open failed: ${d} (UNKNOWN)`)),
      }),
      {},
    );
    return new Uint8Array(res.config);
  }

  async ping(opts?: CallOptions): Promise<void> {
    await unary(this.ctx("Ping", opts), {});
  }

  async mode(opts?: CallOptions): Promise<number> {
    const res = await unary<{ mode: number }>(this.ctx("Mode", opts), {});
    return this.readOnly ? res.mode & ~StoreMode.WRITE : res.mode;
  }

  async size(opts?: CallOptions): Promise<number> {
    const res = await unary<{ size: string }>(this.ctx("Size", opts), {});
    return Number(res.size);
  }

  async *list(resource: Resource, opts?: CallOptions): AsyncIterable<Mac> {
    const res = await unary<{ macs: Buffer[] }>(this.ctx("List", opts), { type: resource, flags: 0 });
    for (const m of res.macs) {
      if (m.byteLength !== 32) throw pluginError(this.proc, "IO", `List of ${resourceName(resource)} gave a MAC of ${m.byteLength} bytes`);
    }
    for (const m of res.macs) {
      throwIfAborted(opts?.signal);
      yield new Uint8Array(m.buffer, m.byteOffset, m.byteLength);
    }
  }

  async put(resource: Resource, mac: Mac, data: Uint8Array | AsyncIterable<Uint8Array>, opts?: CallOptions): Promise<number> {
    const signal = opts?.signal;
    throwIfAborted(signal);
    this.refuseWrite("put");
    const ctx = this.ctx("Put", opts, this.objectCodes(resource, mac));
    const m = ctx.method;
    let call!: grpc.ClientWritableStream<unknown>;
    const answer = new Promise<{ bytes_written: string }>((resolve, reject) => {
      call = this.proc.client.makeClientStreamRequest(m.path, m.requestSerialize, m.responseDeserialize as (b: Buffer) => { bytes_written: string }, new grpc.Metadata(), {}, (err, res) =>
        err ? reject(err) : resolve(res!),
      );
    });
    answer.catch(() => {});
    const onAbort = () => call.cancel();
    signal?.addEventListener("abort", onAbort, { once: true });
    let sourceFailed = false;
    try {
      try {
        await write(call, { mac: Buffer.from(mac), type: resource, flags: 0 });
        if (data instanceof Uint8Array) {
          for (const p of pieces(data, MAX_CHUNK)) await write(call, { chunk: Buffer.from(p.buffer, p.byteOffset, p.byteLength) });
        } else {
          // Pieces are copied into whole chunks: the producer may reuse its buffers, and small pieces cost a message each.
          let buf = Buffer.allocUnsafe(MAX_CHUNK);
          let used = 0;
          const it = data[Symbol.asyncIterator]();
          while (true) {
            let n: IteratorResult<Uint8Array>;
            try {
              n = await it.next();
            } catch (e) {
              sourceFailed = true;
              throw e;
            }
            if (n.done) break;
            throwIfAborted(signal);
            let p = n.value;
            while (p.byteLength > 0) {
              const take = Math.min(MAX_CHUNK - used, p.byteLength);
              buf.set(p.subarray(0, take), used);
              used += take;
              p = p.subarray(take);
              if (used === MAX_CHUNK) {
                await write(call, { chunk: buf });
                buf = Buffer.allocUnsafe(MAX_CHUNK);
                used = 0;
              }
            }
          }
          if (used > 0) await write(call, { chunk: buf.subarray(0, used) });
        }
        throwIfAborted(signal);
        call.end();
      } catch (e) {
        if (sourceFailed || signal?.aborted) {
          call.cancel();
          throw signal?.aborted ? abortError(signal) : e;
        }
        // A write failed because the call ended: its status says why.
        const why = await answer.then(
          () => e,
          (err: unknown) => err,
        );
        call.cancel();
        throw why;
      }
      const res = await answer;
      return Number(res.bytes_written);
    } catch (e) {
      if (sourceFailed && !signal?.aborted) throw e;
      throw await callError(ctx, e);
    } finally {
      signal?.removeEventListener("abort", onAbort);
    }
  }

  async get(resource: Resource, mac: Mac, range?: Range, opts?: CallOptions): Promise<Uint8Array> {
    const signal = opts?.signal;
    throwIfAborted(signal);
    const ctx = this.ctx("Get", opts, this.objectCodes(resource, mac));
    if (range && (!Number.isSafeInteger(range.offset) || range.offset < 0 || !Number.isInteger(range.length) || range.length < 0 || range.length > 0xffffffff)) {
      throw pluginError(this.proc, "USAGE", `Get: range ${range.offset}+${range.length} cannot be sent (offset uint64, length uint32)`);
    }
    const m = ctx.method;
    const request: Record<string, unknown> = { mac: Buffer.from(mac), type: resource, flags: 0 };
    if (range) request.range = { offset: String(range.offset), length: range.length };
    const call = this.proc.client.makeServerStreamRequest(m.path, m.requestSerialize, m.responseDeserialize as (b: Buffer) => { chunk: Buffer }, request, new grpc.Metadata(), {});
    const onAbort = () => call.cancel();
    signal?.addEventListener("abort", onAbort, { once: true });
    const parts: Buffer[] = [];
    let total = 0;
    try {
      const pull = new Pull<{ chunk: Buffer }>(call, 16);
      while (true) {
        const msg = await pull.next();
        if (!msg) break;
        parts.push(msg.chunk);
        total += msg.chunk.byteLength;
        if (range && total > range.length) {
          call.cancel();
          throw pluginError(this.proc, "CORRUPT", `Get of ${resourceName(resource)} ${toHex(mac)} gave more than the ${range.length} bytes asked for`);
        }
      }
    } catch (e) {
      throw await callError(ctx, e);
    } finally {
      signal?.removeEventListener("abort", onAbort);
    }
    if (range && total !== range.length) {
      throw pluginError(this.proc, "CORRUPT", `short read: Get of ${resourceName(resource)} ${toHex(mac)} at ${range.offset} gave ${total} of the ${range.length} bytes asked for`);
    }
    const out = parts.length === 1 ? parts[0]! : Buffer.concat(parts, total);
    return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
  }

  async delete(resource: Resource, mac: Mac, opts?: CallOptions): Promise<void> {
    throwIfAborted(opts?.signal);
    this.refuseWrite("delete");
    await unary(this.ctx("Delete", opts, this.objectCodes(resource, mac)), { mac: Buffer.from(mac), type: resource, flags: 0 });
  }

  /** Close, then the process's end; safe to call twice and after a crash. */
  close(): Promise<void> {
    return closeConnector(this.proc, this.service);
  }
}
