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
const buf = Buffer.allocUnsafe(chunker.max + READ);

/** Messages for the main thread, sent in batches (a message per small file costs more than the file). */
let outbox: ToMain[] = [];
let outboxTransfer: ArrayBuffer[] = [];
let outboxBytes = 0;

function post(m: ToMain, transfer: ArrayBuffer[] = []): void {
  outbox.push(m);
  outboxTransfer.push(...transfer);
  if (m.type === "chunk") outboxBytes += m.encoded.byteLength;
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
    if (!fstatSync(fd).isFile()) throw new Error("no longer a regular file");
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
      const encoded = codec.encodeSync(BlobType.CHUNK, m, chunk);
      // encode() never returns a view of `chunk`, so `buf` may be reused.
      waitForCredit();
      Atomics.add(credit, 0, encoded.byteLength);
      const ab = encoded.byteOffset === 0 && encoded.byteLength === encoded.buffer.byteLength ? (encoded.buffer as ArrayBuffer) : null;
      const out = ab ? encoded : new Uint8Array(encoded);
      post({ type: "chunk", id, mac: m, length: chunk.byteLength, encoded: out }, [out.buffer as ArrayBuffer]);
      size += chunk.byteLength;
      start = cut;
      collectAfter(chunk.byteLength + encoded.byteLength);
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
