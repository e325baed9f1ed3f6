// Seeded data: a small PRNG, a deterministic incompressible byte stream, and
// source-like and log-like text lines. The same seed gives the same corpus,
// big file and change on every machine.

import * as crypto from "node:crypto";

/** A seeded pseudo-random generator (sfc32, seeded from the SHA-256 of the seed string). */
export class Rng {
  a: number;
  b: number;
  c: number;
  d: number;
  constructor(seed: string) {
    const h = crypto.createHash("sha256").update(seed).digest();
    this.a = h.readUInt32LE(0);
    this.b = h.readUInt32LE(4);
    this.c = h.readUInt32LE(8);
    this.d = h.readUInt32LE(12);
    for (let i = 0; i < 16; i++) this.next();
  }
  next(): number {
    this.a >>>= 0;
    this.b >>>= 0;
    this.c >>>= 0;
    this.d >>>= 0;
    const t = (this.a + this.b) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.d = (this.d + 1) | 0;
    const r = (t + this.d) | 0;
    this.c = (this.c + r) | 0;
    return r >>> 0;
  }
  float(): number {
    return this.next() / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.float() * n);
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)]!;
  }
  logUniform(lo: number, hi: number): number {
    return Math.round(Math.exp(Math.log(lo) + this.float() * (Math.log(hi) - Math.log(lo))));
  }
}

/** Deterministic incompressible bytes: an AES-256-CTR keystream keyed by the seed. */
export class RandomStream {
  cipher: crypto.Cipheriv;
  constructor(seed: string) {
    const key = crypto.createHash("sha256").update(`random/${seed}`).digest();
    this.cipher = crypto.createCipheriv("aes-256-ctr", key, Buffer.alloc(16));
  }
  bytes(n: number): Buffer {
    return this.cipher.update(Buffer.alloc(n));
  }
}

export const WORDS = (
  "alpha beta gamma delta epsilon buffer stream chunk index packet record entry value key node tree " +
  "leaf branch root path file dir block page cache queue worker task job batch frame state config " +
  "option param flag error result reader writer encoder decoder parser lexer token symbol scope " +
  "module package client server socket request response header body payload message event handler " +
  "listener timer counter metric sample window offset length size count limit start end begin " +
  "finish open close read write flush sync seek fetch store load save update delete insert remove " +
  "append merge split join sort filter map reduce hash digest cipher nonce salt secret public private " +
  "local remote user group owner mode time date clock retry backoff timeout deadline lock mutex " +
  "signal channel pipe source target origin repo snapshot archive backup restore commit revision " +
  "version release build test check verify valid invalid empty full partial total max min"
).split(" ");
const TYPES = ["number", "string", "boolean", "Buffer", "Uint8Array", "Promise<void>", "Map<string, number>", "unknown"];
export const EXTS = [".ts", ".js", ".c", ".h", ".py", ".go", ".rs", ".md", ".json", ".txt", ".css", ".html"];
export const SERVICES = ["api", "auth", "billing", "cron", "db", "gateway", "mailer", "search", "storage", "worker"];
const LEVELS = ["INFO", "INFO", "INFO", "INFO", "INFO", "INFO", "DEBUG", "DEBUG", "WARN", "ERROR"];

function words(rng: Rng, n: number): string {
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push(rng.pick(WORDS));
  return out.join(" ");
}

/** An identifier: one word, or two in camelCase. */
export function ident(rng: Rng): string {
  const a = rng.pick(WORDS);
  if (rng.int(3) === 0) return a;
  const b = rng.pick(WORDS);
  return a + b.charAt(0).toUpperCase() + b.slice(1);
}

function codeLine(rng: Rng): string {
  const ind = "  ".repeat(rng.int(4));
  switch (rng.int(12)) {
    case 0:
      return `${ind}const ${ident(rng)} = ${ident(rng)}(${ident(rng)}, ${rng.int(1000)});`;
    case 1:
      return `${ind}if (${ident(rng)} ${rng.pick(["<", ">", "===", "!=="])} ${rng.int(100)}) {`;
    case 2:
      return `${ind}}`;
    case 3:
      return `${ind}return ${ident(rng)}.${ident(rng)}(${JSON.stringify(words(rng, 2))});`;
    case 4:
      return `${ind}// ${words(rng, 4 + rng.int(8))}`;
    case 5:
      return `import { ${ident(rng)}, ${ident(rng)} } from "./${ident(rng)}.js";`;
    case 6:
      return `export function ${ident(rng)}(${ident(rng)}: ${rng.pick(TYPES)}, ${ident(rng)}: ${rng.pick(TYPES)}): ${rng.pick(TYPES)} {`;
    case 7:
      return "";
    case 8:
      return `${ind}for (let i = 0; i < ${ident(rng)}.length; i++) ${ident(rng)}[i] = ${ident(rng)}(i);`;
    case 9:
      return `${ind}throw new Error("${words(rng, 3)}: " + ${ident(rng)});`;
    case 10:
      return `${ind}${ident(rng)}.${ident(rng)} = await ${ident(rng)}(${ident(rng)});`;
    default:
      return `${ind}let ${ident(rng)}: ${rng.pick(TYPES)} = ${rng.int(65536)};`;
  }
}

/** One log line at time `t` (ms since the epoch), newline-terminated. */
export function logLine(rng: Rng, t: number): string {
  const id = rng.next().toString(16).padStart(8, "0");
  return (
    `${new Date(t).toISOString()} ${rng.pick(LEVELS)} [${rng.pick(SERVICES)}] ${words(rng, 3 + rng.int(6))}` +
    ` id=${id} user=${rng.int(5000)} took=${rng.int(900)}ms\n`
  );
}

/** `n` lines of code (with `withLogs`, every other one a log line) that text is drawn from. */
export function linePool(rng: Rng, n: number, withLogs: boolean): Buffer[] {
  const pool: Buffer[] = [];
  const t = Date.UTC(2024, 0, 1);
  for (let i = 0; i < n; i++) {
    pool.push(Buffer.from(withLogs && i % 2 === 1 ? logLine(rng, t + rng.int(86_400_000 * 365)) : `${codeLine(rng)}\n`));
  }
  return pool;
}

/** `size` bytes of text: lines drawn at random from the pool (compressible, never a repeated chunk). */
export function fillLines(rng: Rng, pool: readonly Buffer[], size: number, into?: Buffer): Buffer {
  const out = into ?? Buffer.allocUnsafe(size);
  let o = 0;
  while (o < size) o += pool[rng.next() % pool.length]!.copy(out, o, 0, Math.min(size - o, 1 << 30));
  return out;
}
