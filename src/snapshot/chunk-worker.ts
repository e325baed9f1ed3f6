/**
 * Worker thread of the backup pipeline: reads local files with synchronous
 * I/O, cuts them with FastCDC, MACs, compresses and encrypts each chunk,
 * and posts the encoded chunks to the main thread in file order. The main
 * thread deduplicates and packs them (see chunk-pool.ts). Back-pressure: a
 * shared counter of bytes posted but not yet consumed; the worker blocks
 * (Atomics.wait) while it is over the limit.
 */
import { closeSync, constants, fstatSync, openSync, readSync } from "node:fs";
import { parentPort, workerData } from "node:worker_threads";
import { makeChunker, findCut } from "../repository/chunker.js";
import { BlobType, Codec } from "../repository/codec.js";
import { Mac } from "../repository/crypto.js";
import type { PoolInit, ToMain, ToWorker } from "./chunk-pool.js";
import { collectAfter } from "./workers.js";

const init = workerData as PoolInit;
const chunker = makeChunker(init.chunking, init.keys.gear);
const codec = new Codec({ keys: init.keys, encrypted: init.encrypted, compression: init.compression });
const mac = await Mac.create(init.mac, init.keys.mac);
const credit = new Int32Array(init.credit);
const port = parentPort!;
const READ = 4 << 20;
/** Files from this size on are sent as raw chunks (see readFile). */
const RAW_FROM = 32 << 20;
const buf = Buffer.allocUnsafe(chunker.max + READ);

/** Messages for the main thread, sent in batches (a message per small file costs more than the file). */
let outbox: ToMain[] = [];
let outboxTransfer: ArrayBuffer[] = [];
let outboxBytes = 0;

function post(m: ToMain, transfer: ArrayBuffer[] = []): void {
  outbox.push(m);
  outboxTransfer.push(...transfer);
  if (m.type === "chunk") outboxBytes += m.data.byteLength;
  if (outbox.length >= 64 || outboxBytes >= 4 << 20) sendOutbox();
}

function sendOutbox(): void {
  if (outbox.length === 0) return;
  port.postMessage(outbox, outboxTransfer);
  outbox = [];
  outboxTransfer = [];
  outboxBytes = 0;
}

function waitForCredit(): void {
  if (Atomics.load(credit, 0) > init.creditLimit) sendOutbox(); // what we hold is what the main thread waits for
  while (Atomics.load(credit, 0) > init.creditLimit) Atomics.wait(credit, 0, Atomics.load(credit, 0), 100);
}

function openFile(path: string): number {
  const flags = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK;
  try {
    return openSync(path, flags | (constants.O_NOATIME ?? 0));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EPERM") throw e;
    return openSync(path, flags);
  }
}

function readFile(id: number, path: string): void {
  const fd = openFile(path);
  let size = 0;
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new Error("no longer a regular file");
    // A large file's chunks go to the main thread raw: it skips the ones the
    // repository has and compresses the others on every core, while this
    // thread goes on reading, cutting and MACing.
    const raw = st.size >= RAW_FROM;
    let start = 0;
    let end = 0;
    let eof = false;
    while (true) {
      while (!eof && end - start < chunker.max) {
        if (buf.byteLength - end < READ) {
          buf.copyWithin(0, start, end);
          end -= start;
          start = 0;
        }
        const n = readSync(fd, buf, end, buf.byteLength - end, null);
        if (n === 0) eof = true;
        else end += n;
      }
      if (start === end) break;
      const cut = findCut(buf, start, end, chunker);
      const chunk = buf.subarray(start, cut);
      const m = mac.mac(chunk);
      // encodeSync() never returns a view of `chunk`; a raw chunk is copied out: `buf` is reused.
      const data = raw ? new Uint8Array(chunk) : codec.encodeSync(BlobType.CHUNK, m, chunk);
      waitForCredit();
      Atomics.add(credit, 0, data.byteLength);
      const owned = data.byteOffset === 0 && data.byteLength === data.buffer.byteLength ? data : new Uint8Array(data);
      post({ type: "chunk", id, mac: m, length: chunk.byteLength, data: owned, raw }, [owned.buffer as ArrayBuffer]);
      size += chunk.byteLength;
      start = cut;
      collectAfter(chunk.byteLength + data.byteLength);
    }
  } finally {
    closeSync(fd);
  }
  post({ type: "done", id, size });
}

port.on("message", (files: ToWorker[]) => {
  for (const f of files) {
    try {
      readFile(f.id, f.path);
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      post({ type: "error", id: f.id, message: err.code ? `${err.code}: ${err.message}` : String(err.message ?? e) });
    }
  }
  sendOutbox();
});
port.postMessage([{ type: "ready" }]);
