/**
 * An importer plugin as an ordinary Importer (docs/WIRE.md, "Importer").
 *
 * import() is one Import bidi call. Each ImportResponse.record becomes an
 * ImportRecord once checked (pathname normalised and '/'-rooted, a sane
 * fileInfo, a target on symlinks): a malformed record ends the import with
 * an IO error naming the plugin and the field, since the stream can no
 * longer be trusted. A record with hasReader gets open(), an Open call
 * streaming its content. Every answer the core sends on `results` goes back
 * as ImportRequest{result: {header: <the record as received>, error}}: the
 * Go SDK releases a record's reader when its result arrives, and the core
 * answers a record only once it is done reading it, so Open always comes
 * first. Without `results` (not the core's way) a record is answered once
 * its content has been read, or at once when it has none.
 *
 * `finished=true` ends the iteration; the call stays open until every
 * record yielded has been answered (or the results stream ended), then the
 * host half-closes it and the plugin ends it. An error status after that
 * (the plugin's Import failed late) is reported through onWarning.
 *
 * Records with isXattr (Kloset's extended attributes, sent as records of
 * their own) are yielded with `xattrName` set and their value as content;
 * the core adds them to their entry. Alternate data streams are answered
 * with an error, and one warning says so.
 *
 * An AbortSignal cancels the Import call (and any Open call); the
 * iteration then rejects with INTERRUPTED. A consumer that stops iterating
 * before `finished` cancels the call too. close() lets a half-closed Import
 * call end (up to the unary deadline), cancels the others, then Close and
 * the process's end.
 */
import * as grpc from "@grpc/grpc-js";
import { abortError, CofferError, throwIfAborted } from "../../util/errors.js";
import { escapeName } from "../../util/names.js";
import type { ConnectorOptions, FileInfo, Importer, ImportOptions, ImportRecord } from "../records.js";
import { closeConnector, type InitAnswer, method, PluginConnector, type PluginConnectorSpec, startConnector, wireOptions } from "./connector.js";
import type { PluginProcess } from "./process.js";
import { callError, type CallContext, pluginError, Pull, unary } from "./rpc.js";
import { checkWirePathname, fromWireFileInfo, services, toWireRecord, type WireRecord, XATTR_TYPE_ADS } from "./wire.js";

interface ImportResponse {
  record: WireRecord | null;
  finished: boolean;
}

/** The ImportRecord for a wire record, or the reason it is malformed (the field, then what is wrong). */
export function importRecordFromWire(w: WireRecord): { record: Omit<ImportRecord, "open"> } | { field: string; problem: string } {
  const bad = checkWirePathname(w.pathname);
  if (bad !== undefined) return { field: "pathname", problem: bad };
  const name = w.pathname === "/" ? "" : w.pathname.slice(w.pathname.lastIndexOf("/") + 1);
  let fileInfo: FileInfo;
  if (!w.fileInfo && w.error) {
    // An error record may come without file info (Kloset's NewError): a placeholder.
    fileInfo = { name, kind: "file", size: 0, mode: 0, mtimeNs: 0n, dev: 0n, ino: 0n, uid: 0, gid: 0, nlink: 1 };
  } else {
    try {
      fileInfo = fromWireFileInfo(w.fileInfo);
    } catch (e) {
      return { field: "fileInfo", problem: (e as Error).message };
    }
  }
  const record: Omit<ImportRecord, "open"> = { pathname: w.pathname, fileInfo };
  if (w.error) {
    record.error = w.error;
    return { record };
  }
  if (w.target) record.target = w.target;
  if (fileInfo.kind === "symlink" && !w.target) return { field: "target", problem: "a symlink record has no target" };
  return { record };
}

export class PluginImporter extends PluginConnector implements Importer {
  private readonly service = services().importer;
  private readonly sessions = new Set<ImportSession>();
  /** One warning per importer about extended-attribute records. */
  xattrWarned = false;

  private constructor(
    proc: PluginProcess,
    init: InitAnswer,
    readonly options: ConnectorOptions,
  ) {
    super(proc, init);
  }

  /** Starts the plugin and calls Init{options, proto, config}. */
  static async start(spec: PluginConnectorSpec, proto: string, config: Record<string, string>, opts: ConnectorOptions): Promise<PluginImporter> {
    const { proc, init } = await startConnector(spec, opts, services().importer, { options: wireOptions(opts), proto, config });
    return new PluginImporter(proc, init, opts);
  }

  ctx(name: string, signal?: AbortSignal): CallContext {
    return { proc: this.proc, method: method(this.service, name), signal };
  }

  async ping(): Promise<void> {
    await unary(this.ctx("Ping"), {});
  }

  import(opts: ImportOptions = {}): AsyncIterable<ImportRecord> {
    return this.run(opts);
  }

  private async *run(opts: ImportOptions): AsyncGenerator<ImportRecord> {
    throwIfAborted(opts.signal);
    if (this.sessions.size > 0) {
      // An earlier Import call must be over first: Go's SDK keeps one table of readers for all of them,
      // so its late results could release this call's readers. Answers already queued go out first.
      await new Promise((r) => setImmediate(r));
      await Promise.all([...this.sessions].map((s) => s.wind(this.proc.timeoutMs, "not stored: the import was started again")));
      throwIfAborted(opts.signal);
    }
    const s = new ImportSession(this, opts);
    this.sessions.add(s);
    void s.done.then(() => this.sessions.delete(s));
    try {
      while (true) {
        const r = await s.next();
        if (!r) return;
        yield r;
      }
    } finally {
      s.consumerLeft();
    }
  }

  /** Lets half-closed Import calls end, cancels the others, then Close and the process's end. Safe to call twice. */
  async close(): Promise<void> {
    const waits = [...this.sessions].map((s) => s.wind(this.proc.timeoutMs, "not stored: the importer was closed first"));
    await Promise.all(waits);
    await closeConnector(this.proc, this.service);
  }
}

/** One Import call. */
class ImportSession {
  readonly done: Promise<grpc.StatusObject>;
  private readonly call: grpc.ClientDuplexStream<unknown, ImportResponse>;
  private readonly pull: Pull<ImportResponse>;
  private readonly wireOf = new WeakMap<ImportRecord, WireRecord>();
  private readonly answered = new WeakSet<WireRecord>();
  /** Records yielded and not answered yet. */
  private readonly outstanding = new Set<ImportRecord>();
  private finished = false;
  private halfClosed = false;
  private ended = false;
  private resultsEnded = false;
  private fatal: CofferError | undefined;
  /** Reading what follows `finished`. */
  private drained: Promise<void> = Promise.resolve();
  private readonly signal: AbortSignal | undefined;
  private readonly onAbort = () => this.call.cancel();
  private readonly ctx: CallContext;

  constructor(
    private readonly imp: PluginImporter,
    private readonly opts: ImportOptions,
  ) {
    this.signal = opts.signal;
    this.ctx = imp.ctx("Import", this.signal);
    const m = this.ctx.method;
    this.call = imp.proc.client.makeBidiStreamRequest(m.path, m.requestSerialize, m.responseDeserialize as (b: Buffer) => ImportResponse, new grpc.Metadata(), {});
    this.done = new Promise((resolve) =>
      this.call.on("status", (st: grpc.StatusObject) => {
        this.ended = true;
        resolve(st);
      }),
    );
    this.pull = new Pull(this.call, 16);
    this.signal?.addEventListener("abort", this.onAbort, { once: true });
    void this.done.then(() => this.signal?.removeEventListener("abort", this.onAbort));
    if (opts.results) void this.pump(opts.results);
  }

  private async pump(results: AsyncIterable<{ record: ImportRecord; error?: string | undefined }>): Promise<void> {
    try {
      for await (const r of results) this.answer(r.record, r.error);
    } catch {
      // The core's stream failed: as if it had ended.
    }
    this.resultsEnded = true;
    this.maybeHalfClose();
  }

  /** Answers a record yielded to the core (once). */
  private answer(rec: ImportRecord, error: string | undefined): void {
    this.outstanding.delete(rec);
    this.send(this.wireOf.get(rec) ?? toWireRecord(rec, rec.open !== undefined), error);
  }

  /** Sends the result of a wire record, as it was received (once). */
  private send(wire: WireRecord, error: string | undefined): void {
    if (this.answered.has(wire)) return;
    this.answered.add(wire);
    if (!this.halfClosed && !this.ended) this.call.write({ result: { header: wire, error: error ?? "" } });
    this.maybeHalfClose();
  }

  private maybeHalfClose(): void {
    if (this.halfClosed || this.ended || !this.finished) return;
    if (this.outstanding.size > 0 && !this.resultsEnded) return;
    this.halfClosed = true;
    this.call.end();
  }

  /** The next record, or undefined once the plugin said finished. */
  async next(): Promise<ImportRecord | undefined> {
    while (true) {
      if (this.fatal) throw this.fatal;
      if (this.finished) return undefined;
      let msg: ImportResponse | undefined;
      try {
        msg = await this.pull.next();
      } catch (e) {
        throw this.fail(await callError(this.ctx, e));
      }
      if (this.signal?.aborted) throw this.fail(abortError(this.signal));
      if (!msg) throw this.fail(pluginError(this.imp.proc, "IO", "ended the Import stream without saying finished"));
      const rec = msg.record ? this.accept(msg.record) : undefined;
      if (msg.finished) {
        this.finished = true;
        this.maybeHalfClose();
        this.drained = this.drain();
      }
      if (rec) return rec;
    }
  }

  private fail(e: CofferError): CofferError {
    this.fatal ??= e;
    this.call.cancel();
    return this.fatal;
  }

  /** Checks a wire record; undefined for records answered here (xattrs). */
  private accept(w: WireRecord): ImportRecord | undefined {
    const proc = this.imp.proc;
    if (w.isXattr) return this.acceptXattr(w);
    const r = importRecordFromWire(w);
    if ("problem" in r) {
      throw this.fail(pluginError(proc, "IO", `sent a malformed record (${r.field}: ${r.problem}; pathname ${JSON.stringify(w.pathname)}); the import stream cannot be trusted any more`));
    }
    if (w.isXattr) return this.acceptXattr(w);
    const rec: ImportRecord = r.record;
    this.wireOf.set(rec, w);
    this.outstanding.add(rec);
    if (w.hasReader && rec.error === undefined && rec.fileInfo.kind === "file") rec.open = this.opener(rec, w);
    else if (!this.opts.results) this.answer(rec, undefined);
    return rec;
  }

  /**
   * An extended attribute sent as its own record (Kloset's way): the value
   * is the record's content; the core attaches it to the entry at the
   * pathname. Alternate data streams (Windows) are answered with an error.
   */
  private acceptXattr(w: WireRecord): ImportRecord | undefined {
    const proc = this.imp.proc;
    const bad = checkWirePathname(w.pathname) ?? (w.xattrName === "" ? "an extended attribute record without xattrName" : undefined);
    if (bad) throw this.fail(pluginError(proc, "IO", `sent a malformed extended attribute record (${bad}; pathname ${JSON.stringify(w.pathname)}); the import stream cannot be trusted any more`));
    if (w.xattrType === XATTR_TYPE_ADS) {
      if (!this.imp.xattrWarned) {
        this.imp.xattrWarned = true;
        this.imp.options.onWarning?.(`plugin ${proc.name}: alternate data streams (e.g. ${escapeName(w.xattrName)} of ${escapeName(w.pathname)}) are not supported and are not backed up`);
      }
      this.send(w, "alternate data streams are not supported");
      return undefined;
    }
    const name = w.pathname === "/" ? "" : w.pathname.slice(w.pathname.lastIndexOf("/") + 1);
    const rec: ImportRecord = {
      pathname: w.pathname,
      fileInfo: { name, kind: "file", size: 0, mode: 0, mtimeNs: 0n, dev: 0n, ino: 0n, uid: 0, gid: 0, nlink: 1 },
      xattrName: w.xattrName,
    };
    this.wireOf.set(rec, w);
    this.outstanding.add(rec);
    if (w.hasReader) rec.open = this.opener(rec, w);
    else if (!this.opts.results) this.answer(rec, undefined);
    return rec;
  }

  private opener(rec: ImportRecord, w: WireRecord): () => Promise<AsyncIterable<Uint8Array>> {
    let opened = false;
    return async () => {
      if (opened) throw pluginError(this.imp.proc, "IO", `${rec.pathname}: open() called twice`);
      opened = true;
      throwIfAborted(this.signal);
      return this.content(rec, w);
    };
  }

  private async *content(rec: ImportRecord, w: WireRecord): AsyncGenerator<Uint8Array> {
    const ctx = this.imp.ctx("Open", this.signal);
    const m = ctx.method;
    const call = this.imp.proc.client.makeServerStreamRequest(m.path, m.requestSerialize, m.responseDeserialize as (b: Buffer) => { chunk: Buffer }, { record: w }, new grpc.Metadata(), {});
    const onAbort = () => call.cancel();
    this.signal?.addEventListener("abort", onAbort, { once: true });
    let complete = false;
    try {
      const pull = new Pull<{ chunk: Buffer }>(call, 4);
      while (true) {
        let msg: { chunk: Buffer } | undefined;
        try {
          msg = await pull.next();
        } catch (e) {
          const err = await callError(ctx, e);
          if (err.code === "INTERRUPTED" || err.code === "IO") throw err;
          throw new CofferError("IO", err.message, err.data, { cause: err });
        }
        if (!msg) break;
        if (msg.chunk.byteLength > 0) yield new Uint8Array(msg.chunk.buffer, msg.chunk.byteOffset, msg.chunk.byteLength);
      }
      complete = true;
    } finally {
      if (!complete) call.cancel();
      this.signal?.removeEventListener("abort", onAbort);
      if (!this.opts.results) this.answer(rec, undefined);
    }
  }

  /** Reads what follows `finished` (nothing, then the status) so that a late failure is seen. */
  private async drain(): Promise<void> {
    try {
      while (await this.pull.next()) {
        // Nothing is expected after finished.
      }
    } catch (e) {
      const err = await callError(this.ctx, e);
      if (err.code !== "INTERRUPTED") this.imp.options.onWarning?.(`${err.message} (after the last record)`);
    }
  }

  /** The consumer stopped iterating: before `finished`, the call is cancelled. */
  consumerLeft(): void {
    if (!this.finished || this.fatal) this.call.cancel();
  }

  /**
   * Ends the call for close() or a new import(): records still unanswered
   * are answered (without a results stream: ok, as always; with one: an
   * error, since the core did not store them), the call is half-closed once
   * `finished` came (else cancelled), and waited for up to `ms`.
   */
  async wind(ms: number, why: string): Promise<void> {
    if (!this.ended) {
      for (const r of [...this.outstanding]) this.answer(r, this.opts.results ? why : undefined);
      this.resultsEnded = true;
      this.maybeHalfClose();
      if (!this.halfClosed) this.call.cancel();
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([this.done, new Promise<void>((r) => (timer = setTimeout(r, ms)))]);
      clearTimeout(timer);
    }
    this.call.cancel();
    await this.drained;
  }
}
