// The machine's own limits, measured beside the tools: its description, the
// read floor (`cat FILE > /dev/null`) and the zstd-3 + AES-256-GCM ceiling on
// the big file's content. The ceiling is measured before the rounds and
// again in each round, since the machine's speed varies within a day.

import * as fs from "node:fs";
import * as os from "node:os";
import { Worker } from "node:worker_threads";
import { exec, execSync } from "./process.ts";
import { MiB } from "./units.ts";

export interface Machine {
  nproc: number;
  memoryBytes: number;
  cpu: string;
  kernel: string;
  fs: string;
  device: string;
  host: string;
}

/** The CPUs, memory and kernel, and the file system and device `workDir` is on. */
export function describeMachine(workDir: string): Machine {
  const cpuinfo = fs.existsSync("/proc/cpuinfo") ? fs.readFileSync("/proc/cpuinfo", "utf8") : "";
  return {
    nproc: os.availableParallelism(),
    memoryBytes: os.totalmem(),
    cpu: /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1]?.trim() ?? os.cpus()[0]?.model ?? "unknown",
    kernel: `${os.type()} ${os.release()}`,
    fs: execSync("df", ["--output=fstype", workDir]).stdout.split("\n").pop() ?? "unknown",
    device: execSync("df", ["--output=source", workDir]).stdout.split("\n").pop() ?? "unknown",
    host: os.hostname(),
  };
}

/** Reads `file` to /dev/null with cat: the floor under every tool's big-file backup. */
export async function readFloor(file: string): Promise<{ wall: number; code: number }> {
  const r = await exec("cat", [file], { stdout: "ignore" });
  return { wall: r.wall, code: r.code };
}

export interface Ceiling {
  sampleBytes: number; // the content compressed by each thread
  compressedBytes: number; // what one thread made of it, with the AEAD overhead
  threads: number;
  singleMiBs: number; // throughput on one thread
  allMiBs: number; // throughput on `threads` threads together
}

// Plain JS run in worker threads (eval: true): zstd level 3 + AES-256-GCM over 1 MiB pieces.
const CEILING_WORKER = `
const { parentPort, workerData } = require("node:worker_threads");
const zlib = require("node:zlib");
const crypto = require("node:crypto");
const buf = Buffer.from(workerData.sab);
const key = crypto.randomBytes(32);
const opts = { params: { [zlib.constants.ZSTD_c_compressionLevel]: 3 } };
const t0 = performance.now();
let out = 0;
for (let o = 0; o < buf.length; o += 1 << 20) {
  const c = zlib.zstdCompressSync(buf.subarray(o, o + (1 << 20)), opts);
  const ci = crypto.createCipheriv("aes-256-gcm", key, crypto.randomBytes(12));
  ci.update(c);
  ci.final();
  ci.getAuthTag();
  out += c.length + 28;
}
parentPort.postMessage({ ms: performance.now() - t0, bytes: buf.length, out });
`;

async function ceilingRun(sab: SharedArrayBuffer, threads: number): Promise<{ miBs: number; out: number }> {
  const results = await Promise.all(
    Array.from(
      { length: threads },
      () =>
        new Promise<{ ms: number; bytes: number; out: number }>((resolve, reject) => {
          const w = new Worker(CEILING_WORKER, { eval: true, workerData: { sab } });
          w.once("message", (m: { ms: number; bytes: number; out: number }) => {
            resolve(m);
            void w.terminate();
          });
          w.once("error", reject);
        }),
    ),
  );
  const bytes = results.reduce((a, r) => a + r.bytes, 0);
  const ms = Math.max(...results.map((r) => r.ms));
  return { miBs: bytes / MiB / (ms / 1000), out: results[0]!.out };
}

/** The machine's zstd-3 + AEAD throughput on the big file's own content (text half + random half). */
export async function measureCeiling(file: string, size: number, threads: number): Promise<Ceiling> {
  const each = Math.min(64 * MiB, Math.floor(size / 2));
  const sab = new SharedArrayBuffer(2 * each);
  const view = Buffer.from(sab);
  const fd = fs.openSync(file, "r");
  try {
    fs.readSync(fd, view, 0, each, 0);
    fs.readSync(fd, view, each, each, Math.floor(size / 2));
  } finally {
    fs.closeSync(fd);
  }
  const single = await ceilingRun(sab, 1);
  const all = threads > 1 ? await ceilingRun(sab, threads) : single;
  return { sampleBytes: 2 * each, compressedBytes: single.out, threads, singleMiBs: single.miBs, allMiBs: all.miBs };
}

/** The highest of the ceilings measured (by all-thread throughput), or null. */
export function highestCeiling(ceilings: readonly Ceiling[]): Ceiling | null {
  return ceilings.reduce<Ceiling | null>((best, c) => (best === null || c.allMiBs > best.allMiBs ? c : best), null);
}
