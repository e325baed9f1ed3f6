/**
 * The Store service (docs/WIRE.md, "Store"; proto package `store`) over a
 * coffer Store: each rpc maps to the Store method of the same name. Put
 * takes the MAC and resource from its first message (and that message's
 * chunk, if any, as the first bytes); Get honours the optional range and
 * streams the object in chunks of at most MAX_CHUNK; List answers every MAC
 * in one message. Errors: see toRpcError (NotFoundError and NO_REPOSITORY ->
 * NOT_FOUND, REPOSITORY_EXISTS -> ALREADY_EXISTS, READ_ONLY ->
 * PERMISSION_DENIED, INTERRUPTED -> CANCELLED); a Get range past the end
 * (CORRUPT) is OUT_OF_RANGE; the details are the error's message.
 */
import { status } from "@grpc/grpc-js";
import type { sendUnaryData, ServerReadableStream, ServerWritableStream, UntypedServiceImplementation } from "@grpc/grpc-js";
import { Resource } from "../../connectors/flags.js";
import { isCofferError } from "../../util/errors.js";
import type { Store } from "../../connectors/store.js";
import { failStream, messages, RpcError, send, toRpcError, unary, wireChunks } from "./rpc.js";
import type { Session } from "./session.js";
import { connectorOptions } from "./session.js";

interface PutRequest {
  mac: Buffer;
  type: number;
  chunk: Buffer;
  flags: number;
}
interface GetRequest {
  mac: Buffer;
  type: number;
  range?: { offset: string | number; length: number } | null;
  flags: number;
}

const RESOURCES: ReadonlySet<number> = new Set(Object.values(Resource));

function resourceOf(type: number): Resource {
  if (!RESOURCES.has(type)) throw new RpcError(status.UNIMPLEMENTED, `storage plugin: resource ${type} is not supported`);
  return type as Resource;
}

export function storeService(session: Session<Store>): UntypedServiceImplementation {
  const calls = session.calls;

  async function runPut(call: ServerReadableStream<PutRequest, unknown>, signal: AbortSignal): Promise<{ bytes_written: string }> {
    const store = session.get();
    const it = messages<PutRequest>(call);
    const first = await it.next();
    if (first.done) throw new RpcError(status.INVALID_ARGUMENT, "storage plugin: Put without a message");
    const resource = resourceOf(first.value.type);
    const mac = new Uint8Array(first.value.mac);
    async function* data(): AsyncGenerator<Uint8Array> {
      if (first.value.chunk.byteLength > 0) yield first.value.chunk;
      for (;;) {
        const m = await it.next();
        if (m.done) return;
        if (m.value.chunk.byteLength > 0) yield m.value.chunk;
      }
    }
    const n = await store.put(resource, mac, data(), { signal });
    return { bytes_written: String(n) };
  }

  async function runGet(call: ServerWritableStream<GetRequest, { chunk: Buffer }>, signal: AbortSignal): Promise<void> {
    const store = session.get();
    const req = call.request;
    const resource = resourceOf(req.type);
    const range = req.range ? { offset: Number(req.range.offset), length: req.range.length } : undefined;
    if (range !== undefined && !Number.isSafeInteger(range.offset)) throw new RpcError(status.OUT_OF_RANGE, `storage plugin: bad range offset ${String(req.range?.offset)}`);
    let data: Uint8Array;
    try {
      data = await store.get(resource, new Uint8Array(req.mac), range, { signal });
    } catch (e) {
      // A range past the end (the Store contract's CORRUPT) is OUT_OF_RANGE on the wire.
      if (range !== undefined && isCofferError(e, "CORRUPT")) throw new RpcError(status.OUT_OF_RANGE, e.message, toRpcError(e).metadata);
      throw e;
    }
    for (const chunk of wireChunks(data)) {
      await send(call, { chunk }, signal);
    }
    call.end();
  }

  return {
    Init: unary(calls, async (req: { proto: string; config: Record<string, string> }) => {
      const store = await session.init(req.proto, req.config ?? {}, connectorOptions(undefined));
      return { origin: store.origin, type: store.type, root: store.root, flags: store.flags >>> 0 };
    }),
    Create: unary(calls, async (req: { config: Buffer }, signal) => {
      await session.get().create(new Uint8Array(req.config), { signal });
      return {};
    }),
    Open: unary(calls, async (_req, signal) => {
      const config = await session.get().open({ signal });
      return { config: Buffer.from(config.buffer, config.byteOffset, config.byteLength) };
    }),
    Ping: unary(calls, async (_req, signal) => {
      await session.get().ping({ signal });
      return {};
    }),
    Mode: unary(calls, async (_req, signal) => ({ mode: await session.get().mode({ signal }) })),
    Size: unary(calls, async (_req, signal) => ({ size: String(await session.get().size({ signal })) })),
    List: unary(calls, async (req: { type: number }, signal) => {
      const store = session.get();
      const macs: Buffer[] = [];
      for await (const m of store.list(resourceOf(req.type), { signal })) macs.push(Buffer.from(m.buffer, m.byteOffset, m.byteLength));
      return { macs };
    }),
    Put: (call: ServerReadableStream<PutRequest, unknown>, callback: sendUnaryData<{ bytes_written: string }>) => {
      calls.run(call, (signal) => runPut(call, signal)).then(
        (res) => callback(null, res),
        (e: unknown) => callback(toRpcError(e)),
      );
    },
    Get: (call: ServerWritableStream<GetRequest, { chunk: Buffer }>) => {
      calls.run(call, (signal) => runGet(call, signal)).catch((e: unknown) => failStream(call, e));
    },
    Delete: unary(calls, async (req: { mac: Buffer; type: number }, signal) => {
      await session.get().delete(resourceOf(req.type), new Uint8Array(req.mac), { signal });
      return {};
    }),
    Close: unary(calls, async () => {
      await session.close();
      return {};
    }),
  };
}
