/**
 * The Exporter service (docs/WIRE.md, "Exporter"; proto package
 * `plakar.exporter`) over a coffer Exporter. Export reads the request stream
 * in order: a record, then (hasReader) chunk messages ended by an empty
 * chunk. Each record goes to exporter.export() with a content() that yields
 * those chunks as pieces; the chunks the exporter did not read are skipped
 * before the next record. One Result answers each record, in order; a record
 * the exporter failed on is a Result with an error, not a stream error. When
 * the host closes its side, finish() runs, then the response stream ends.
 *
 * Extended attributes travel as records of their own (isXattr, the value as
 * content) and reach the exporter as the `xattrs` of their entry's record:
 * - sent before their entry (Plakar's order), they are kept by pathname and
 *   answered at once;
 * - sent after it (coffer's host order), and only for EXPORTXATTR
 *   exporters: an entry naming attributes (extendedAttributes) not received
 *   yet waits, its content spooled (memory, then a temporary file), until
 *   they arrive or another record comes; then it is exported and answered,
 *   then its attributes.
 */
import { status } from "@grpc/grpc-js";
import type { ServerDuplexStream, UntypedServiceImplementation } from "@grpc/grpc-js";
import { LocationFlag } from "../../connectors/flags.js";
import { fromWireRecord } from "../../connectors/plugin/wire.js";
import type { WireRecord, WireResult } from "../../connectors/plugin/wire.js";
import type { ContentPiece, ExportRecord, Exporter, Xattr } from "../../connectors/records.js";
import { isCofferError } from "../../util/errors.js";
import { failStream, messages, RpcError, send, unary } from "./rpc.js";
import type { Session, WireOptions } from "./session.js";
import { Spool } from "./spool.js";
import { connectorOptions } from "./session.js";

interface InitRequest {
  options: WireOptions | null;
  proto: string;
  config: Record<string, string>;
}
interface ExportRequest {
  record?: WireRecord | null;
  chunk?: Buffer | null;
  packet?: "record" | "chunk";
}
interface ExportResponse {
  result: WireResult;
}

function protocolError(msg: string): RpcError {
  return new RpcError(status.INVALID_ARGUMENT, `exporter plugin: ${msg}`);
}

type Next = () => Promise<ExportRequest | undefined>;

/** The chunks of one record's content, read from the request stream once. */
class ContentReader {
  private done = false;
  private started = false;
  private offset = 0;

  constructor(
    private readonly next: Next,
    private readonly pathname: string,
  ) {}

  private async nextChunk(): Promise<Buffer | undefined> {
    if (this.done) return undefined;
    const v = await this.next();
    if (v === undefined) throw protocolError(`the stream ended inside the content of ${JSON.stringify(this.pathname)}`);
    if (v.packet === "record" || !v.chunk) throw protocolError(`a record came inside the content of ${JSON.stringify(this.pathname)}`);
    if (v.chunk.byteLength === 0) {
      this.done = true;
      return undefined;
    }
    return v.chunk;
  }

  /** ExportRecord.content: callable once. */
  content = (): AsyncIterable<ContentPiece> => {
    if (this.started) throw new Error(`${this.pathname}: content can be read only once`);
    this.started = true;
    return this.pieces();
  };

  private async *pieces(): AsyncGenerator<ContentPiece> {
    for (;;) {
      const chunk = await this.nextChunk();
      if (chunk === undefined) return;
      const piece: ContentPiece = { offset: this.offset, length: chunk.byteLength, data: chunk };
      this.offset += chunk.byteLength;
      yield piece;
    }
  }

  /** Skips what the exporter left unread, up to the empty chunk. */
  async drain(): Promise<void> {
    while ((await this.nextChunk()) !== undefined);
  }
}

async function collect(reader: ContentReader): Promise<Uint8Array> {
  const parts: Buffer[] = [];
  for await (const p of reader.content()) if (p.data) parts.push(Buffer.from(p.data));
  return new Uint8Array(Buffer.concat(parts));
}

export function exporterService(session: Session<Exporter>): UntypedServiceImplementation {
  let exporting = false;

  async function runExport(call: ServerDuplexStream<ExportRequest, ExportResponse>, signal: AbortSignal): Promise<void> {
    const exp = session.get();
    if (exporting) throw new RpcError(status.FAILED_PRECONDITION, "exporter plugin: an Export is already running");
    exporting = true;
    try {
      const it = messages<ExportRequest>(call);
      let pushedBack: ExportRequest | undefined;
      const next: Next = async () => {
        if (pushedBack !== undefined) {
          const m = pushedBack;
          pushedBack = undefined;
          return m;
        }
        const m = await it.next();
        return m.done ? undefined : m.value;
      };
      const exportXattrs = (exp.flags & LocationFlag.EXPORTXATTR) !== 0;
      /** Attributes received and not yet given to their record, by pathname. */
      const xattrs = new Map<string, Xattr[]>();
      const keep = async (w: WireRecord) => {
        const value = w.hasReader ? await collect(new ContentReader(next, w.pathname)) : new Uint8Array(0);
        const list = xattrs.get(w.pathname) ?? [];
        list.push({ name: w.xattrName, value });
        xattrs.set(w.pathname, list);
      };
      const answer = (header: WireRecord, error: string | undefined) => send(call, { result: { header, error: error ?? "" } }, signal);
      /** Exports one record; failures of the record become its error. */
      const exportOne = async (rec: ExportRecord): Promise<string | undefined> => {
        try {
          return (await exp.export(rec, { signal })).error;
        } catch (e) {
          if (e instanceof RpcError || isCofferError(e, "INTERRUPTED") || signal.aborted) throw e;
          return e instanceof Error ? e.message : String(e);
        }
      };

      for (;;) {
        const m = await next();
        if (m === undefined) break;
        if (signal.aborted) throw signal.reason;
        const w = m.record;
        if (m.packet === "chunk" || !w) throw protocolError("expected a record, got a chunk");
        if (w.isXattr) {
          await keep(w);
          await answer(w, undefined);
          continue;
        }
        const reader = w.hasReader ? new ContentReader(next, w.pathname) : undefined;
        let rec: ExportRecord;
        try {
          const base = fromWireRecord(w);
          rec = { pathname: base.pathname, fileInfo: base.fileInfo };
          if (base.target !== undefined) rec.target = base.target;
        } catch (e) {
          await reader?.drain();
          await answer(w, e instanceof Error ? e.message : String(e));
          continue;
        }
        const have = new Set((xattrs.get(w.pathname) ?? []).map((x) => x.name));
        const missing = new Set(exportXattrs ? w.extendedAttributes.filter((n) => !have.has(n)) : []);
        if (missing.size === 0) {
          const xs = xattrs.get(w.pathname);
          if (xs !== undefined) rec.xattrs = xs;
          xattrs.delete(w.pathname);
          if (reader) rec.content = reader.content;
          const error = await exportOne(rec);
          await reader?.drain();
          await answer(w, error);
          continue;
        }
        // The attributes follow the record: hold it (and its content) until they are in.
        const spool = reader ? await Spool.from(reader.content()) : undefined;
        try {
          const later: WireRecord[] = [];
          while (missing.size > 0) {
            const n = await next();
            if (n === undefined) break;
            const xw = n.record;
            if (n.packet === "chunk" || !xw || !xw.isXattr || xw.pathname !== w.pathname) {
              pushedBack = n;
              break;
            }
            await keep(xw);
            missing.delete(xw.xattrName);
            later.push(xw);
          }
          const xs = xattrs.get(w.pathname);
          if (xs !== undefined) rec.xattrs = xs;
          xattrs.delete(w.pathname);
          if (spool) rec.content = () => spool.pieces();
          const error = await exportOne(rec);
          await answer(w, error);
          for (const xw of later) await answer(xw, error);
        } finally {
          await spool?.dispose();
        }
      }
      if (xattrs.size > 0) {
        const n = [...xattrs.values()].reduce((a, l) => a + l.length, 0);
        process.stderr.write(`warning: exporter plugin: ${n} extended attribute(s) of ${xattrs.size} path(s) came with no entry to go to: not restored\n`);
      }
      // Failures of the last stage (a directory's attributes) come after every answer: say them here.
      for (const r of (await exp.finish({ signal })) ?? []) if (r.error !== undefined) process.stderr.write(`warning: exporter plugin: ${r.pathname}: ${r.error}\n`);
      call.end();
    } finally {
      exporting = false;
    }
  }

  return {
    Init: unary(session.calls, async (req: InitRequest) => {
      const exp = await session.init(req.proto, req.config ?? {}, connectorOptions(req.options));
      return { origin: exp.origin, type: exp.type, root: exp.root, flags: exp.flags >>> 0 };
    }),
    Ping: unary(session.calls, async () => {
      await session.get().ping();
      return {};
    }),
    Export: (call: ServerDuplexStream<ExportRequest, ExportResponse>) => {
      session.calls.run(call, (signal) => runExport(call, signal)).catch((e: unknown) => failStream(call, e));
    },
    Close: unary(session.calls, async () => {
      await session.close();
      return {};
    }),
  };
}
