/**
 * An exporter plugin as an ordinary Exporter (docs/WIRE.md, "Exporter").
 *
 * All export() calls share one Export bidi call, opened by the first one;
 * their messages are sent one record at a time, in call order: the record
 * (hasReader on every regular file), then for a file its content as chunks
 * of at most MAX_CHUNK bytes (zero pieces as zero bytes) ended by an empty
 * chunk. Records are pipelined: the next record is sent while earlier ones
 * wait for their ExportResponse. A result is matched to the oldest pending
 * record with its pathname (Go exporters may answer out of order), else to
 * the oldest pending record.
 *
 * Extended attributes go only to plugins whose flags have EXPORTXATTR (the
 * core gives them to no other): each as a record of its own after the
 * entry's (wire.ts toWireXattrRecord: isXattr, xattrName, xattrType
 * EXTENDED, hasReader) with the value as chunks, as Kloset does; export()
 * then waits for every result and reports the first error.
 *
 * Pathnames are checked before anything is sent (checkWirePathname): an
 * unsafe one gets an error result and is never seen by the plugin.
 *
 * Failures of a single record keep the stream in step: a content source
 * that throws ends the record's content early (the plugin may leave a
 * partial file) and the record gets an error result; an abort during the
 * content does the same and export() rejects with INTERRUPTED; an abort
 * while queued sends nothing. If the Export call itself fails, every record
 * waiting on it rejects with the mapped error and the next export() opens a
 * new call. finish() half-closes the call and waits for its end; close()
 * without finish() cancels it.
 */
import * as grpc from "@grpc/grpc-js";
import { abortError, type CofferError, throwIfAborted } from "../../util/errors.js";
import { LocationFlag } from "../flags.js";
import type { ConnectorOptions, ContentPiece, ExportRecord, ExportResult, Exporter, ImportOptions } from "../records.js";
import { closeConnector, type InitAnswer, method, PluginConnector, type PluginConnectorSpec, startConnector, wireOptions } from "./connector.js";
import type { PluginProcess } from "./process.js";
import { callError, type CallContext, pieces, pluginError, Pull, unary, write } from "./rpc.js";
import { checkWirePathname, MAX_CHUNK, services, toWireRecord, toWireXattrRecord, type WireRecord, type WireResult } from "./wire.js";

const ZEROS = new Uint8Array(MAX_CHUNK);

interface Slot {
  key: string;
  resolve(error: string | undefined): void;
  reject(e: CofferError): void;
}

function keyOf(w: { pathname: string; isXattr: boolean; xattrName: string }): string {
  return w.isXattr ? `${w.pathname}\0${w.xattrName}` : w.pathname;
}

/** One Export call. */
class ExportStream {
  readonly call: grpc.ClientDuplexStream<unknown, { result: WireResult | null }>;
  readonly done: Promise<CofferError | undefined>;
  private readonly pending: Slot[] = [];
  ended = false;
  halfClosed = false;
  failure: CofferError | undefined;

  constructor(
    private readonly exp: PluginExporter,
    private readonly ctx: CallContext,
  ) {
    const m = ctx.method;
    this.call = exp.proc.client.makeBidiStreamRequest(m.path, m.requestSerialize, m.responseDeserialize as (b: Buffer) => { result: WireResult | null }, new grpc.Metadata(), {});
    this.done = this.read();
  }

  expect(w: WireRecord): Promise<string | undefined> {
    return new Promise((resolve, reject) => {
      if (this.failure) reject(this.failure);
      else this.pending.push({ key: keyOf(w), resolve, reject });
    });
  }

  private async read(): Promise<CofferError | undefined> {
    const pull = new Pull<{ result: WireResult | null }>(this.call, 64);
    let failure: CofferError | undefined;
    try {
      while (true) {
        const msg = await pull.next();
        if (!msg) break;
        const h = msg.result?.header;
        if (!msg.result || !h) {
          failure = pluginError(this.exp.proc, "IO", "sent an ExportResponse without a result");
          this.call.cancel();
          break;
        }
        const key = keyOf(h);
        let i = this.pending.findIndex((s) => s.key === key);
        if (i < 0) i = 0;
        const slot = this.pending.splice(i, 1)[0];
        if (!slot) {
          this.exp.options.onWarning?.(`plugin ${this.exp.proc.name}: a result for ${JSON.stringify(h.pathname)}, which was not exported, ignored`);
          continue;
        }
        slot.resolve(msg.result.error || undefined);
      }
    } catch (e) {
      failure = await callError(this.ctx, e);
    }
    this.ended = true;
    if (!failure && this.pending.length > 0) failure = pluginError(this.exp.proc, "IO", `ended the Export stream with ${this.pending.length} record(s) unanswered`);
    this.failure = failure;
    for (const s of this.pending.splice(0)) s.reject(failure!);
    return failure;
  }
}

export class PluginExporter extends PluginConnector implements Exporter {
  private readonly service = services().exporter;
  private stream: ExportStream | undefined;
  /** Sends are serialised: each export() waits for the previous one's messages. */
  private sending: Promise<void> = Promise.resolve();

  private constructor(
    proc: PluginProcess,
    init: InitAnswer,
    readonly options: ConnectorOptions,
  ) {
    super(proc, init);
  }

  /** Starts the plugin and calls Init{options, proto, config}. */
  static async start(spec: PluginConnectorSpec, proto: string, config: Record<string, string>, opts: ConnectorOptions): Promise<PluginExporter> {
    const { proc, init } = await startConnector(spec, opts, services().exporter, { options: wireOptions(opts), proto, config });
    return new PluginExporter(proc, init, opts);
  }

  private ctx(name: string, signal?: AbortSignal): CallContext {
    return { proc: this.proc, method: method(this.service, name), signal };
  }

  async ping(): Promise<void> {
    await unary(this.ctx("Ping"), {});
  }

  private open(): ExportStream {
    if (!this.stream || this.stream.ended || this.stream.halfClosed) this.stream = new ExportStream(this, this.ctx("Export"));
    return this.stream;
  }

  async export(record: ExportRecord, opts?: ImportOptions): Promise<ExportResult> {
    const signal = opts?.signal;
    throwIfAborted(signal);
    const pathname = record.pathname;
    const bad = checkWirePathname(pathname);
    if (bad !== undefined) return { pathname, error: `refused: ${bad}` };

    // Wait for our turn to send, or for an abort.
    const prev = this.sending;
    let release!: () => void;
    this.sending = new Promise((r) => (release = r));
    let onAbort: (() => void) | undefined;
    const aborted = new Promise<"aborted">((r) => {
      onAbort = () => r("aborted");
      signal?.addEventListener("abort", onAbort, { once: true });
    });
    let answers: Promise<string | undefined>[];
    let contentError: string | undefined;
    try {
      if ((await Promise.race([prev, aborted])) === "aborted") {
        void prev.then(release);
        throw abortError(signal);
      }
      try {
        ({ answers, contentError } = await this.send(record, signal));
      } finally {
        release();
      }
      const results = await Promise.race([Promise.all(answers), aborted]);
      if (results === "aborted") throw abortError(signal);
      throwIfAborted(signal);
      const error = contentError ?? results.find((e) => e !== undefined);
      return error === undefined ? { pathname } : { pathname, error };
    } catch (e) {
      if (signal?.aborted) throw abortError(signal);
      throw e;
    } finally {
      if (onAbort) signal?.removeEventListener("abort", onAbort);
    }
  }

  /** Sends a record's messages; resolves with the promises of its results once they are all sent. */
  private async send(record: ExportRecord, signal: AbortSignal | undefined): Promise<{ answers: Promise<string | undefined>[]; contentError: string | undefined }> {
    const s = this.open();
    const call = s.call;
    const answers: Promise<string | undefined>[] = [];
    const expect = (w: WireRecord) => {
      const p = s.expect(w);
      p.catch(() => {}); // observed by export(); not unhandled if the export gave up first
      answers.push(p);
    };
    const pathname = record.pathname;
    const isFile = record.fileInfo.kind === "file";
    const wire = toWireRecord(record, isFile);
    const sendValue = async (value: Uint8Array) => {
      for (const p of pieces(value, MAX_CHUNK)) await write(call, { chunk: Buffer.from(p.buffer, p.byteOffset, p.byteLength) });
      await write(call, { chunk: Buffer.alloc(0) });
    };
    let contentError: string | undefined;
    try {
      expect(wire);
      await write(call, { record: wire });
      if (isFile) {
        // Once the record is sent, its content always ends with the empty chunk, whatever happens to the source.
        const it = record.content?.()[Symbol.asyncIterator]();
        while (it) {
          let n: IteratorResult<ContentPiece>;
          try {
            n = await it.next();
          } catch (e) {
            if (!signal?.aborted) contentError = `cannot read the content: ${(e as Error).message}`;
            break;
          }
          if (n.done) break;
          if (signal?.aborted) {
            void Promise.resolve(it.return?.()).catch(() => {});
            break;
          }
          const piece = n.value;
          if (piece.data) {
            for (const p of pieces(piece.data, MAX_CHUNK)) await write(call, { chunk: Buffer.from(p.buffer, p.byteOffset, p.byteLength) });
          } else {
            for (let left = piece.length; left > 0; left -= MAX_CHUNK) await write(call, { chunk: Buffer.from(ZEROS.buffer, 0, Math.min(left, MAX_CHUNK)) });
          }
        }
        await write(call, { chunk: Buffer.alloc(0) });
      }
      if (signal?.aborted) throw abortError(signal);
      if (contentError === undefined && (this.flags & LocationFlag.EXPORTXATTR) !== 0) {
        for (const x of record.xattrs ?? []) {
          const xw = toWireXattrRecord(pathname, x.name, x.value.byteLength);
          expect(xw);
          await write(call, { record: xw });
          await sendValue(x.value);
        }
      }
    } catch (e) {
      if (signal?.aborted) throw abortError(signal);
      // A write failed: the call ended; its status says why.
      throw (await s.done) ?? (await callError(this.ctx("Export", signal), e));
    }
    return { answers, contentError };
  }

  async finish(opts?: ImportOptions): Promise<void> {
    const signal = opts?.signal;
    throwIfAborted(signal);
    await this.sending;
    const s = this.stream;
    if (!s || s.ended) {
      if (s?.failure) throw s.failure;
      return;
    }
    s.halfClosed = true;
    s.call.end();
    const onAbort = () => s.call.cancel();
    signal?.addEventListener("abort", onAbort, { once: true });
    try {
      const failure = await s.done;
      if (signal?.aborted) throw abortError(signal);
      if (failure) throw failure;
    } finally {
      signal?.removeEventListener("abort", onAbort);
    }
  }

  /** Cancels an Export call that was not finished, then Close and the process's end. Safe to call twice. */
  async close(): Promise<void> {
    const s = this.stream;
    if (s && !s.ended) {
      if (!s.halfClosed) s.call.cancel();
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([s.done, new Promise((r) => (timer = setTimeout(r, this.proc.timeoutMs)))]);
      clearTimeout(timer);
      s.call.cancel();
    }
    await closeConnector(this.proc, this.service);
  }
}
