/**
 * The Importer service (docs/WIRE.md, "Importer"; proto package `importer`)
 * over a coffer Importer, as go-kloset-sdk serves a Kloset importer:
 * - Import streams the connector's records (hasReader for regular files with
 *   content), each extended attribute as its own record after its entry's
 *   (isXattr, the value as content, as Kloset's fs importer does), then
 *   {finished}. Each record's reader is held until its Result arrives on the
 *   request stream (or Open takes it). Results go to the connector's
 *   `results` iterable only if it declared NEEDACK: one per record, once the
 *   record's and its attributes' Results are all in (the first error wins);
 *   that stream ends once every record yielded is answered, or when the host
 *   closes its side.
 *   The call ends once finished is sent and the host has closed its side.
 * - Open streams a held record's content in chunks of at most MAX_CHUNK and
 *   releases it (as the Go SDK does); NOT_FOUND when the record is unknown,
 *   already opened or released.
 */
import { status } from "@grpc/grpc-js";
import type { ServerDuplexStream, ServerWritableStream, UntypedServiceImplementation } from "@grpc/grpc-js";
import { createReadStream } from "node:fs";
import { LocationFlag } from "../../connectors/flags.js";
import { MAX_CHUNK, toWireRecord, toWireXattrRecord, XATTR_TYPE_EXTENDED } from "../../connectors/plugin/wire.js";
import type { WireRecord, WireResult } from "../../connectors/plugin/wire.js";
import type { Importer, ImportRecord, ImportResult } from "../../connectors/records.js";
import { Channel } from "../../util/channel.js";
import { failStream, messages, RpcError, send, unary, whenAborted, wireChunks } from "./rpc.js";
import type { Session, WireOptions } from "./session.js";
import { connectorOptions } from "./session.js";

interface InitRequest {
  options: WireOptions | null;
  proto: string;
  config: Record<string, string>;
}
interface ImportRequest {
  result: WireResult | null;
}
interface ImportResponse {
  record?: WireRecord;
  finished?: boolean;
}
interface OpenRequest {
  record: WireRecord | null;
}

type Content = () => Promise<AsyncIterable<Uint8Array> | Iterable<Uint8Array>>;

/** What a Result is counted against: one per record, with its attributes' records. */
interface Pending {
  record: ImportRecord;
  outstanding: number;
  error: string | undefined;
}

const ADS = 2;

/** The Go SDK's key of a record (integration-grpc HoldingReaders): the pathname, or xattr:PATH:NAME (@ for ADS). */
function recordKey(r: { pathname: string; isXattr?: boolean; xattrName?: string; xattrType?: number }): string {
  if (!r.isXattr) return r.pathname;
  return `xattr:${r.pathname}${r.xattrType === ADS ? "@" : ":"}${r.xattrName ?? ""}`;
}

function localContent(path: string): Content {
  return async () => createReadStream(path, { highWaterMark: MAX_CHUNK });
}

export function importerService(session: Session<Importer>): UntypedServiceImplementation {
  /** Readers of records sent and not yet released, by key. */
  const held = new Map<string, Content>();
  let importing = false;
  let imported = false;

  async function runImport(call: ServerDuplexStream<ImportRequest, ImportResponse>, callSignal: AbortSignal): Promise<void> {
    const imp = session.get();
    if (importing) throw new RpcError(status.FAILED_PRECONDITION, "importer plugin: an Import is already running");
    if (imported && (imp.flags & LocationFlag.STREAM) !== 0) throw new RpcError(status.FAILED_PRECONDITION, "importer plugin: a STREAM importer can be imported only once");
    importing = true;
    imported = true;
    const needAck = (imp.flags & LocationFlag.NEEDACK) !== 0;
    const results = needAck ? new Channel<ImportResult>() : undefined;
    const pending = new Map<string, Pending>();
    /** xattr key -> the record key it counts against. */
    const owners = new Map<string, string>();

    // The import stops when the call does, or when the host closes its side before `finished`.
    const stop = new AbortController();
    const signal = stop.signal;
    callSignal.addEventListener("abort", () => stop.abort(callSignal.reason), { once: true });
    // A stopped import answers no more: the connector's results end (a connection that died may never end the request stream).
    signal.addEventListener("abort", () => results?.end(), { once: true });

    // The request side: Results, until the host closes its side.
    let hostDone = false;
    let allSent = false;
    const received = (async () => {
      const it = messages<ImportRequest>(call);
      try {
        for (;;) {
          const m = await it.next();
          if (m.done) return;
          const header = m.value.result?.header;
          if (!header) continue;
          const key = recordKey(header);
          held.delete(key);
          if (!needAck) continue;
          const ownerKey = owners.get(key) ?? key;
          owners.delete(key);
          const p = pending.get(ownerKey);
          if (p === undefined) continue;
          if (m.value.result?.error && p.error === undefined) p.error = m.value.result.error;
          if (--p.outstanding === 0) {
            pending.delete(ownerKey);
            results?.push(p.error === undefined ? { record: p.record } : { record: p.record, error: p.error });
            if (allSent && pending.size === 0) results?.end();
          }
        }
      } catch {
        // The call broke: the send side sees it too.
      } finally {
        hostDone = true;
        results?.end();
        if (!allSent) stop.abort(new RpcError(status.CANCELLED, "importer plugin: the host ended the Import before it finished"));
      }
    })();

    try {
      const records = imp.import(results === undefined ? { signal } : { signal, results });
      for await (const rec of records) {
        if (signal.aborted || hostDone) break;
        if (rec.xattrName !== undefined) {
          // An extended attribute yielded as a record of its own: sent as Kloset's xattr record.
          const xkey = recordKey({ pathname: rec.pathname, isXattr: true, xattrName: rec.xattrName, xattrType: XATTR_TYPE_EXTENDED });
          const open = rec.open ?? (async () => [] as Uint8Array[]);
          held.set(xkey, open);
          if (needAck) pending.set(xkey, { record: rec, outstanding: 1, error: undefined });
          await send(call, { record: toWireXattrRecord(rec.pathname, rec.xattrName, 0) }, signal);
          continue;
        }
        const content: Content | undefined =
          rec.fileInfo.kind !== "file" || rec.error !== undefined ? undefined : (rec.open ?? (rec.localPath !== undefined ? localContent(rec.localPath) : undefined));
        const key = recordKey({ pathname: rec.pathname });
        if (content !== undefined) held.set(key, content);
        const xattrs = rec.error === undefined ? (rec.xattrs ?? []) : [];
        if (needAck) pending.set(key, { record: rec, outstanding: 1 + xattrs.length, error: undefined });
        await send(call, { record: toWireRecord(rec, content !== undefined) }, signal);
        for (const x of xattrs) {
          const xkey = recordKey({ pathname: rec.pathname, isXattr: true, xattrName: x.name, xattrType: XATTR_TYPE_EXTENDED });
          const value = x.value;
          held.set(xkey, async () => [value]);
          if (needAck) owners.set(xkey, key);
          await send(call, { record: toWireXattrRecord(rec.pathname, x.name, value.byteLength) }, signal);
        }
      }
      if (signal.aborted || hostDone) throw signal.reason ?? new RpcError(status.CANCELLED, "importer plugin: the host ended the Import before it finished");
      // Every record yielded: the results stream ends once all are answered (as in the core), not only when the host closes its side.
      allSent = true;
      if (pending.size === 0) results?.end();
      await send(call, { finished: true }, signal);
      await Promise.race([received, whenAborted(signal)]);
      call.end();
    } catch (e) {
      // Readers are of no use once the import failed.
      held.clear();
      throw e;
    } finally {
      importing = false;
    }
  }

  async function runOpen(call: ServerWritableStream<OpenRequest, { chunk: Buffer }>, signal: AbortSignal): Promise<void> {
    session.get();
    const rec = call.request.record;
    if (!rec) throw new RpcError(status.INVALID_ARGUMENT, "importer plugin: Open without a record");
    const key = recordKey(rec);
    const content = held.get(key);
    if (content === undefined) throw new RpcError(status.NOT_FOUND, `importer plugin: ${JSON.stringify(rec.pathname)}${rec.isXattr ? ` (attribute ${JSON.stringify(rec.xattrName)})` : ""}: no such record, or already released`);
    held.delete(key);
    for await (const piece of await content()) {
      for (const chunk of wireChunks(piece)) {
        await send(call, { chunk }, signal);
      }
    }
    call.end();
  }

  return {
    Init: unary(session.calls, async (req: InitRequest) => {
      const imp = await session.init(req.proto, req.config ?? {}, connectorOptions(req.options));
      return { origin: imp.origin, type: imp.type, root: imp.root, flags: imp.flags >>> 0 };
    }),
    Ping: unary(session.calls, async () => {
      await session.get().ping();
      return {};
    }),
    Import: (call: ServerDuplexStream<ImportRequest, ImportResponse>) => {
      session.calls.run(call, (signal) => runImport(call, signal)).catch((e: unknown) => failStream(call, e));
    },
    Open: (call: ServerWritableStream<OpenRequest, { chunk: Buffer }>) => {
      session.calls.run(call, (signal) => runOpen(call, signal)).catch((e: unknown) => failStream(call, e));
    },
    Close: unary(session.calls, async () => {
      held.clear();
      await session.close();
      return {};
    }),
  };
}
