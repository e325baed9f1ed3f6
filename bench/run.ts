// bench/run.ts — side-by-side benchmark of coffer, restic and borg (issue 5).
//
//   npm run bench                       generated, seeded corpus (~300 MiB), 3 rounds, 2 GiB big file
//   npm run bench -- /usr/share         any directory (copied first: the 1% change phase edits the copy)
//   npm run bench -- --quick            smoke test: 1 round, ~20 MiB corpus, 64 MiB big file
//   npm run bench -- --help             all options
//
// Runs under Node 24 with type stripping: erasable TypeScript only (no enums,
// namespaces or parameter properties). One file on purpose: a local import
// would need a ".ts" extension, which the project's tsconfig does not allow.
// Times are reported, never judged: the exit code is 1 only when a tool fails
// or a restore differs from the corpus.

import { spawn, spawnSync } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;
const PASSWORD = "coffer-bench-password";
const T0 = performance.now();

type ToolName = "coffer" | "restic" | "borg";
const ALL_TOOLS: readonly ToolName[] = ["coffer", "restic", "borg"];
type Phase = "first" | "nochange" | "change" | "restore" | "big";
const PHASES: readonly Phase[] = ["first", "nochange", "change", "restore", "big"];
const PHASE_LABEL: Record<Phase, string> = {
  first: "first backup",
  nochange: "no-change backup",
  change: "1% change backup",
  restore: "restore",
  big: "big file backup",
};

// ---------------------------------------------------------------- options

interface Options {
  quick: boolean;
  rounds: number;
  corpusDir: string | null;
  corpusSize: number;
  bigSize: number;
  seed: string;
  tools: ToolName[];
  install: boolean;
  outDir: string;
  tmpBase: string;
  keep: boolean;
  changePercent: number;
  dropCaches: boolean;
}

const HELP = `usage: npm run bench -- [options] [CORPUS_DIR]

Benchmarks coffer against restic and borg on the same tree: first backup,
no-change backup, backup after changing 1% of the files, full restore,
repository size, peak RSS, and one big file's backup throughput.
Without CORPUS_DIR a seeded corpus is generated. CORPUS_DIR is never
modified: it is copied (cp -a) into the temporary directory first.

options:
  --quick              smoke test: 1 round, 20M corpus, 64M big file; writes quick.md/quick.json
  --rounds N           rounds (default 3; --quick: 1)
  --corpus-size SIZE   generated corpus size (default 300M; --quick: 20M)
  --big-size SIZE      big single file size (default 2G; --quick: 64M; 0 skips the phase)
  --seed S             seed of the generated data (default coffer-bench-1)
  --tools LIST         comma-separated subset of coffer,restic,borg (default: all)
  --change-percent P   share of the files changed for the "1% change" phase (default 1)
  --no-install         do not apt-get install missing restic/borg
  --no-drop-caches     keep the page cache (the report says "warm cache")
  --tmp DIR            where the work directory is created (default: $TMPDIR or /tmp)
  --out DIR            where results are written (default: bench/results)
  --keep               keep the work directory (for debugging)
SIZE takes K, M, G suffixes (binary: 1M = 1 MiB).
`;

function parseSize(s: string, what: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?$/i.exec(s.trim());
  if (!m) usage(`bad size for ${what}: ${s}`);
  const mult: Record<string, number> = { "": 1, k: KiB, m: MiB, g: GiB, t: 1024 * GiB };
  return Math.round(Number(m[1]) * (mult[(m[2] ?? "").toLowerCase()] ?? 1));
}

function usage(msg: string): never {
  process.stderr.write(`bench: ${msg}\n\n${HELP}`);
  process.exit(2);
}

function parseArgs(argv: string[]): Options {
  let quick = false;
  let rounds: number | null = null;
  let corpusSize: number | null = null;
  let bigSize: number | null = null;
  let corpusDir: string | null = null;
  const o = {
    seed: "coffer-bench-1",
    tools: [...ALL_TOOLS],
    install: true,
    outDir: path.join(ROOT, "bench", "results"),
    tmpBase: process.env["TMPDIR"] ?? os.tmpdir(),
    keep: false,
    changePercent: 1,
    dropCaches: true,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const val = (): string => {
      const eq = a.indexOf("=");
      if (eq > 0) return a.slice(eq + 1);
      const v = argv[++i];
      if (v === undefined) usage(`${a} needs a value`);
      return v;
    };
    const name = a.startsWith("--") && a.includes("=") ? a.slice(0, a.indexOf("=")) : a;
    switch (name) {
      case "-h":
      case "--help":
        process.stdout.write(HELP);
        process.exit(0);
        break;
      case "--quick":
        quick = true;
        break;
      case "--rounds": {
        const n = Number(val());
        if (!Number.isInteger(n) || n < 1) usage("--rounds needs a positive integer");
        rounds = n;
        break;
      }
      case "--corpus-size":
        corpusSize = parseSize(val(), "--corpus-size");
        break;
      case "--big-size":
        bigSize = parseSize(val(), "--big-size");
        break;
      case "--seed":
        o.seed = val();
        break;
      case "--tools": {
        const list = val().split(",").map((s) => s.trim()).filter(Boolean);
        for (const t of list) if (!ALL_TOOLS.includes(t as ToolName)) usage(`unknown tool ${t}`);
        o.tools = ALL_TOOLS.filter((t) => list.includes(t));
        break;
      }
      case "--change-percent": {
        const p = Number(val());
        if (!(p > 0 && p <= 100)) usage("--change-percent needs a number in (0, 100]");
        o.changePercent = p;
        break;
      }
      case "--no-install":
        o.install = false;
        break;
      case "--no-drop-caches":
        o.dropCaches = false;
        break;
      case "--tmp":
        o.tmpBase = path.resolve(val());
        break;
      case "--out":
        o.outDir = path.resolve(val());
        break;
      case "--keep":
        o.keep = true;
        break;
      default:
        if (a.startsWith("-")) usage(`unknown option ${a}`);
        if (corpusDir !== null) usage("only one corpus directory");
        corpusDir = path.resolve(a);
    }
  }
  if (corpusDir !== null) {
    const st = fs.statSync(corpusDir, { throwIfNoEntry: false });
    if (!st || !st.isDirectory()) usage(`not a directory: ${corpusDir}`);
  }
  return {
    ...o,
    quick,
    corpusDir,
    rounds: rounds ?? (quick ? 1 : 3),
    corpusSize: corpusSize ?? (quick ? 20 * MiB : 300 * MiB),
    bigSize: bigSize ?? (quick ? 64 * MiB : 2 * GiB),
  };
}

// ---------------------------------------------------------------- logging, cleanup, processes

function clock(): string {
  const s = Math.round((performance.now() - T0) / 1000);
  return `${String(Math.floor(s / 60)).padStart(2, "0")}:${String(s % 60).padStart(2, "0")}`;
}

function log(msg: string): void {
  process.stderr.write(`[bench ${clock()}] ${msg}\n`);
}

let workDir: string | null = null;
let keepWorkDir = false;
let stopping = false;
const children = new Set<ChildProcess>();

function rmrf(p: string): void {
  try {
    fs.rmSync(p, { recursive: true, force: true, maxRetries: 3 });
  } catch {
    spawnSync("chmod", ["-R", "u+rwX", p], { stdio: "ignore" });
    fs.rmSync(p, { recursive: true, force: true, maxRetries: 3 });
  }
}

function cleanup(): void {
  if (workDir === null) return;
  const dir = workDir;
  workDir = null;
  if (keepWorkDir) {
    log(`keeping ${dir} (--keep)`);
    return;
  }
  try {
    rmrf(dir);
  } catch (e) {
    process.stderr.write(`bench: could not remove ${dir}: ${(e as Error).message}\n`);
  }
}

function killChildren(): void {
  for (const c of children) {
    if (c.pid !== undefined && c.exitCode === null) {
      try {
        process.kill(-c.pid, "SIGTERM"); // the whole process group (detached)
      } catch {
        /* gone */
      }
    }
  }
}

async function stop(signal: NodeJS.Signals): Promise<void> {
  if (stopping) return;
  stopping = true;
  log(`${signal}: stopping, removing the work directory`);
  const waits = [...children].map((c) => new Promise<void>((res) => c.once("close", () => res())));
  killChildren();
  await Promise.race([Promise.all(waits), new Promise((res) => setTimeout(res, 5000))]);
  cleanup();
  process.exit(signal === "SIGINT" ? 130 : 143);
}

interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
  wall: number; // seconds
}

interface ExecOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  stdout?: "pipe" | "ignore";
}

const TAIL = 64 * KiB;

function exec(cmd: string, args: readonly string[], o: ExecOptions = {}): Promise<ExecResult> {
  return new Promise((resolve) => {
    const start = performance.now();
    const child = spawn(cmd, args, {
      cwd: o.cwd ?? ROOT,
      env: o.env ?? process.env,
      stdio: ["ignore", o.stdout ?? "pipe", "pipe"],
      detached: true, // own process group, so a stop reaches the tool under /usr/bin/time
    });
    children.add(child);
    let stdout = "";
    let stderr = "";
    child.stdout?.on("data", (d: Buffer) => {
      stdout = (stdout + d.toString()).slice(-TAIL);
    });
    child.stderr?.on("data", (d: Buffer) => {
      stderr = (stderr + d.toString()).slice(-TAIL);
    });
    let done = false;
    const finish = (code: number): void => {
      if (done) return;
      done = true;
      children.delete(child);
      if (stopping) return; // stop() exits the process
      resolve({ code, stdout, stderr, wall: (performance.now() - start) / 1000 });
    };
    child.on("error", (e) => {
      stderr += String(e.message);
      finish(127);
    });
    child.on("close", (code, signal) => finish(code ?? (signal ? 128 : 1)));
  });
}

function execSync(cmd: string, args: readonly string[], cwd?: string): { code: number; stdout: string } {
  const r = spawnSync(cmd, args, { cwd: cwd ?? ROOT, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  return { code: r.status ?? (r.error ? 127 : 1), stdout: (r.stdout ?? "").trim() };
}

function hasCommand(name: string): boolean {
  return execSync("sh", ["-c", `command -v ${name}`]).code === 0;
}

function duBytes(p: string): number {
  const r = execSync("du", ["-sb", p]);
  const n = Number(r.stdout.split(/\s+/)[0]);
  return r.code === 0 && Number.isFinite(n) ? n : NaN;
}

// ---------------------------------------------------------------- page cache

let warmCache = false;
let warmReason = "";

async function dropCaches(enabled: boolean): Promise<void> {
  await exec("sync", []);
  if (!enabled) {
    warmCache = true;
    warmReason ||= "--no-drop-caches";
    return;
  }
  if (warmCache) return;
  try {
    fs.writeFileSync("/proc/sys/vm/drop_caches", "3");
  } catch (e) {
    warmCache = true;
    warmReason = `cannot drop caches: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`;
    log(`warm cache: ${warmReason}`);
  }
}

// ---------------------------------------------------------------- seeded data

class Rng {
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
  // sfc32
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
class RandomStream {
  cipher: crypto.Cipheriv;
  constructor(seed: string) {
    const key = crypto.createHash("sha256").update(`random/${seed}`).digest();
    this.cipher = crypto.createCipheriv("aes-256-ctr", key, Buffer.alloc(16));
  }
  bytes(n: number): Buffer {
    return this.cipher.update(Buffer.alloc(n));
  }
}

const WORDS = (
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
const EXTS = [".ts", ".js", ".c", ".h", ".py", ".go", ".rs", ".md", ".json", ".txt", ".css", ".html"];
const SERVICES = ["api", "auth", "billing", "cron", "db", "gateway", "mailer", "search", "storage", "worker"];
const LEVELS = ["INFO", "INFO", "INFO", "INFO", "INFO", "INFO", "DEBUG", "DEBUG", "WARN", "ERROR"];

function words(rng: Rng, n: number): string {
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push(rng.pick(WORDS));
  return out.join(" ");
}

function ident(rng: Rng): string {
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

function logLine(rng: Rng, t: number): string {
  const id = rng.next().toString(16).padStart(8, "0");
  return (
    `${new Date(t).toISOString()} ${rng.pick(LEVELS)} [${rng.pick(SERVICES)}] ${words(rng, 3 + rng.int(6))}` +
    ` id=${id} user=${rng.int(5000)} took=${rng.int(900)}ms\n`
  );
}

function linePool(rng: Rng, n: number, withLogs: boolean): Buffer[] {
  const pool: Buffer[] = [];
  const t = Date.UTC(2024, 0, 1);
  for (let i = 0; i < n; i++) {
    pool.push(Buffer.from(withLogs && i % 2 === 1 ? logLine(rng, t + rng.int(86_400_000 * 365)) : `${codeLine(rng)}\n`));
  }
  return pool;
}

/** `size` bytes of text: lines drawn at random from the pool (compressible, never a repeated chunk). */
function fillLines(rng: Rng, pool: readonly Buffer[], size: number, into?: Buffer): Buffer {
  const out = into ?? Buffer.allocUnsafe(size);
  let o = 0;
  while (o < size) o += pool[rng.next() % pool.length]!.copy(out, o, 0, Math.min(size - o, 1 << 30));
  return out;
}

// ---------------------------------------------------------------- corpus

interface CorpusStats {
  files: number;
  dirs: number;
  symlinks: number;
  others: number;
  hardlinks: number; // extra names of already-counted inodes
  bytes: number; // sum of regular file sizes, by path
}

function walk(root: string, visit: (rel: string, st: fs.Stats) => void): void {
  const stack: string[] = [""];
  while (stack.length > 0) {
    const rel = stack.pop()!;
    const names = fs.readdirSync(path.join(root, rel)).sort();
    for (let i = names.length - 1; i >= 0; i--) {
      const r = rel === "" ? names[i]! : `${rel}/${names[i]!}`;
      const st = fs.lstatSync(path.join(root, r));
      visit(r, st);
      if (st.isDirectory()) stack.push(r);
    }
  }
}

function corpusStats(root: string): CorpusStats {
  const s: CorpusStats = { files: 0, dirs: 0, symlinks: 0, others: 0, hardlinks: 0, bytes: 0 };
  const inodes = new Set<string>();
  walk(root, (_rel, st) => {
    if (st.isFile()) {
      s.files++;
      s.bytes += st.size;
      if (st.nlink > 1) {
        const k = `${st.dev}:${st.ino}`;
        if (inodes.has(k)) s.hardlinks++;
        else inodes.add(k);
      }
    } else if (st.isDirectory()) s.dirs++;
    else if (st.isSymbolicLink()) s.symlinks++;
    else s.others++;
  });
  return s;
}

function generateCorpus(root: string, target: number, seed: string): void {
  const rng = new Rng(`${seed}/corpus`);
  const rnd = new RandomStream(`${seed}/corpus`);
  const codePool = linePool(rng, 20_000, false);
  const used = new Set<string>();
  const files: { rel: string; size: number; kind: string }[] = [];
  let written = 0;

  const unique = (rel: string): string => {
    let r = rel;
    for (let i = 2; used.has(r); i++) {
      const ext = path.extname(rel);
      r = `${rel.slice(0, rel.length - ext.length)}-${i}${ext}`;
    }
    used.add(r);
    return r;
  };
  const put = (rel0: string, data: Buffer, kind: string, mode = 0o644): string => {
    const rel = unique(rel0);
    const abs = path.join(root, rel);
    fs.mkdirSync(path.dirname(abs), { recursive: true });
    fs.writeFileSync(abs, data, { mode });
    written += data.length;
    files.push({ rel, size: data.length, kind });
    return rel;
  };
  const cap = (want: number, limit: number, min: number): number => Math.max(min, Math.min(want, Math.ceil(limit - written)));

  // 1. source-like trees: many small text files in nested directories
  const projects = Math.max(2, Math.round(target / (40 * MiB)));
  const dirs: string[][] = [];
  for (let p = 0; p < projects; p++) dirs.push([`src/${rng.pick(WORDS)}-${p}`]);
  const header = Buffer.from(`// Copyright 2024 The Example Authors. All rights reserved.\n// SPDX-License-Identifier: ISC\n\n`);
  while (written < 0.22 * target) {
    const pd = dirs[rng.int(projects)]!;
    let dir = rng.pick(pd);
    if (rng.float() < 0.15 && dir.split("/").length < 9) {
      dir = `${dir}/${rng.pick(WORDS)}`;
      if (!pd.includes(dir)) pd.push(dir);
    }
    const size = cap(rng.logUniform(100, 48 * KiB), 0.22 * target, 100);
    const body = fillLines(rng, codePool, Math.max(0, size - header.length));
    put(`${dir}/${ident(rng)}${rng.pick(EXTS)}`, Buffer.concat([header, body]), "src");
  }

  // 2. compressible logs
  let t = Date.UTC(2024, 0, 1);
  while (written < 0.42 * target) {
    const svc = rng.pick(SERVICES);
    const size = cap(rng.logUniform(32 * KiB, 16 * MiB), 0.42 * target, 4 * KiB);
    const parts: string[] = [];
    let n = 0;
    while (n < size) {
      t += rng.int(2000);
      const l = logLine(rng, t);
      parts.push(l);
      n += l.length;
    }
    put(`logs/${svc}/${svc}.log.${rng.int(30)}`, Buffer.from(parts.join("")), "log");
  }

  // 3. binaries: incompressible
  while (written < 0.75 * target) {
    const size = cap(rng.logUniform(1 * KiB, 24 * MiB), 0.75 * target, 1 * KiB);
    const where = rng.pick(["bin", "lib", "assets/img", "assets/video", "data"]);
    const ext = where === "lib" ? ".so" : where === "assets/img" ? ".png" : where === "assets/video" ? ".mp4" : ".bin";
    put(`${where}/${ident(rng)}${ext}`, rnd.bytes(size), "bin", where === "bin" ? 0o755 : 0o644);
  }

  // 4. exact duplicates: one source project copied as a whole, then single files
  const proj = dirs[0]![0]!;
  const projFiles = files.filter((f) => f.rel.startsWith(`${proj}/`));
  const projBytes = projFiles.reduce((a, f) => a + f.size, 0);
  if (projBytes < 0.08 * target) {
    for (const f of projFiles) put(`vendor/${path.basename(proj)}-copy/${f.rel.slice(proj.length + 1)}`, fs.readFileSync(path.join(root, f.rel)), "dup");
  }
  const originals = files.filter((f) => f.kind !== "dup");
  while (written < 0.9 * target) {
    const f = rng.pick(originals);
    if (f.size > 0.9 * target - written + 64 * KiB) continue;
    put(`backup/old-${rng.int(5)}/${path.basename(f.rel)}`, fs.readFileSync(path.join(root, f.rel)), "dup");
  }

  // 5. near duplicates: a copy with a few bytes inserted (content-defined chunking keeps most chunks)
  const big = originals.filter((f) => f.size >= 64 * KiB);
  for (let tries = 0; written < target && big.length > 0 && tries < 1000; tries++) {
    const f = rng.pick(big);
    if (f.size > target - written + 256 * KiB) continue;
    const data = fs.readFileSync(path.join(root, f.rel));
    const at = rng.int(data.length);
    put(`archive/${path.basename(f.rel)}.v2`, Buffer.concat([data.subarray(0, at), rnd.bytes(100), data.subarray(at)]), "near");
  }

  // 6. odd entries: empty files and dirs, symlinks (one dangling), hard links, deep and unusual names
  for (let i = 0; i < 20; i++) put(`${rng.pick(rng.pick(dirs))}/empty-${i}`, Buffer.alloc(0), "empty");
  for (let i = 0; i < 5; i++) fs.mkdirSync(path.join(root, `empty-dirs/d${i}`), { recursive: true });
  for (let i = 0; i < 10; i++) {
    const f = rng.pick(originals);
    const link = path.join(root, path.dirname(f.rel), `link-${i}`);
    if (!fs.existsSync(link)) fs.symlinkSync(path.basename(f.rel), link);
  }
  fs.symlinkSync("../does-not-exist", path.join(root, "logs", "dangling-link"));
  for (let i = 0; i < 3; i++) {
    const f = rng.pick(originals);
    const rel = unique(`hardlinks/${i}-${path.basename(f.rel)}`);
    fs.mkdirSync(path.dirname(path.join(root, rel)), { recursive: true });
    fs.linkSync(path.join(root, f.rel), path.join(root, rel));
  }
  const deep = Array.from({ length: 14 }, (_, i) => `level${i}`).join("/");
  put(`${deep}/deep.txt`, fillLines(rng, codePool, 3000), "src");
  put("names/with space and ümlaut — ✓.txt", fillLines(rng, codePool, 2000), "src");
  put(`names/${"long".repeat(60)}.txt`, fillLines(rng, codePool, 2000), "src");
}

// ---------------------------------------------------------------- the big file

async function generateBigFile(file: string, size: number, seed: string): Promise<void> {
  const rng = new Rng(`${seed}/big`);
  const rnd = new RandomStream(`${seed}/big`);
  const pool = linePool(rng, 65_536, true);
  const fd = fs.openSync(file, "w");
  const piece = 16 * MiB;
  const buf = Buffer.allocUnsafe(piece);
  const half = Math.floor(size / 2);
  try {
    for (let o = 0; o < size; ) {
      if (stopping) return;
      const n = Math.min(piece, (o < half ? half : size) - o);
      const data = o < half ? fillLines(rng, pool, n, buf) : rnd.bytes(n);
      fs.writeSync(fd, data, 0, n);
      o += n;
      if (o % (256 * MiB) === 0) await new Promise((r) => setImmediate(r)); // let signals in
    }
  } finally {
    fs.closeSync(fd);
  }
}

interface Ceiling {
  sampleBytes: number;
  compressedBytes: number;
  threads: number;
  singleMiBs: number;
  allMiBs: number;
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
async function measureCeiling(file: string, size: number, threads: number): Promise<Ceiling> {
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

// ---------------------------------------------------------------- tools

interface Measure {
  round: number;
  wall: number; // seconds
  rss: number | null; // bytes
  cpu: number | null; // user + sys seconds
  code: number;
}

interface Tool {
  name: ToolName;
  available: boolean;
  version: string;
  note: string;
  failed: boolean;
  home: string;
  lastArchive: string;
  measures: Record<Phase, Measure[]>;
  repoSize: number[];
  cacheSize: number[];
}

interface Cmd {
  cmd: string;
  args: string[];
  cwd: string;
}

const COFFER_BIN = path.join(ROOT, "bin", "coffer.js");
const APT_PACKAGE: Record<ToolName, string> = { coffer: "", restic: "restic", borg: "borgbackup" };

function toolEnv(t: Tool): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const k of ["COFFER_REPOSITORY", "RESTIC_REPOSITORY", "RESTIC_REPOSITORY_FILE", "RESTIC_PASSWORD_FILE", "RESTIC_PASSWORD_COMMAND", "BORG_REPO", "BORG_PASSCOMMAND", "BORG_BASE_DIR", "RESTIC_CACHE_DIR", "BORG_CACHE_DIR", "BORG_CONFIG_DIR", "BORG_SECURITY_DIR", "BORG_KEYS_DIR"]) {
    delete env[k];
  }
  return {
    ...env,
    // a private HOME per tool: caches and configs live in the work directory and are measured
    HOME: t.home,
    XDG_CACHE_HOME: path.join(t.home, ".cache"),
    XDG_CONFIG_HOME: path.join(t.home, ".config"),
    XDG_DATA_HOME: path.join(t.home, ".local", "share"),
    COFFER_PASSPHRASE: PASSWORD,
    RESTIC_PASSWORD: PASSWORD,
    BORG_PASSPHRASE: PASSWORD,
    BORG_DISPLAY_PASSPHRASE: "no",
    BORG_RELOCATED_REPO_ACCESS_IS_OK: "yes",
  };
}

function initCmd(t: Tool, repo: string): Cmd {
  const cwd = path.dirname(repo);
  switch (t.name) {
    case "coffer":
      // no KDF flags: the figures are what a user of the defaults gets (the settings line reads them back)
      return { cmd: process.execPath, args: [COFFER_BIN, "at", repo, "create"], cwd };
    case "restic":
      return { cmd: "restic", args: ["-r", repo, "init", "-q"], cwd };
    case "borg":
      return { cmd: "borg", args: ["init", "--encryption", "repokey-blake2", repo], cwd };
  }
}

function backupCmd(t: Tool, repo: string, cwd: string, rel: string, label: string): Cmd {
  switch (t.name) {
    case "coffer":
      return { cmd: process.execPath, args: [COFFER_BIN, "at", repo, "backup", "-q", rel], cwd };
    case "restic":
      return { cmd: "restic", args: ["-r", repo, "backup", "-q", rel], cwd };
    case "borg":
      return { cmd: "borg", args: ["create", `${repo}::${label}`, rel], cwd };
  }
}

function restoreCmd(t: Tool, repo: string, dir: string): Cmd {
  switch (t.name) {
    case "coffer":
      return { cmd: process.execPath, args: [COFFER_BIN, "at", repo, "restore", "-q", "--to", dir], cwd: dir };
    case "restic":
      return { cmd: "restic", args: ["-r", repo, "restore", "latest", "--target", dir, "-q"], cwd: dir };
    case "borg":
      return { cmd: "borg", args: ["extract", `${repo}::${t.lastArchive}`], cwd: dir };
  }
}

/** Loads the tool's own program files into the page cache after a drop (not timed). */
function warmCmd(t: Tool): Cmd {
  switch (t.name) {
    case "coffer":
      return { cmd: process.execPath, args: [COFFER_BIN, "--help"], cwd: ROOT };
    case "restic":
      return { cmd: "restic", args: ["version"], cwd: ROOT };
    case "borg":
      return { cmd: "borg", args: ["--version"], cwd: ROOT };
  }
}

/** Where a tool puts the restored tree of a backup of `cwd/rel`. */
function restoredRoot(t: Tool, dir: string, rel: string): string {
  return t.name === "coffer" ? dir : path.join(dir, rel);
}

async function setupTool(name: ToolName, opts: Options, home: string): Promise<Tool> {
  const t: Tool = {
    name,
    available: false,
    version: "",
    note: "",
    failed: false,
    home,
    lastArchive: "",
    measures: { first: [], nochange: [], change: [], restore: [], big: [] },
    repoSize: [],
    cacheSize: [],
  };
  if (name === "coffer") {
    if (!fs.existsSync(path.join(ROOT, "dist", "cli", "main.js"))) {
      t.note = "dist/cli/main.js missing: run `npm run build`";
      return t;
    }
    const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, "package.json"), "utf8")) as { version: string };
    const head = execSync("git", ["rev-parse", "--short", "HEAD"]);
    const dirty = execSync("git", ["status", "--porcelain", "--", "src", "bin"]);
    t.version = `coffer ${pkg.version}` + (head.code === 0 ? ` (${head.stdout}${dirty.stdout ? ", modified src" : ""})` : "") + `, node ${process.version}`;
    t.available = true;
    return t;
  }
  if (!hasCommand(name)) {
    const pkg = APT_PACKAGE[name];
    if (!opts.install) {
      t.note = "not installed (--no-install)";
    } else if (process.getuid?.() !== 0 || !hasCommand("apt-get")) {
      t.note = `not installed, and cannot apt-get install ${pkg} (needs root and apt-get)`;
    } else {
      log(`${name} is missing: running apt-get install -y ${pkg}`);
      const aptEnv = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
      let r = await exec("apt-get", ["install", "-y", pkg], { env: aptEnv });
      if (r.code !== 0) {
        log(`apt-get install failed; running apt-get update, then apt-get install -y ${pkg} again`);
        await exec("apt-get", ["update"], { env: aptEnv });
        r = await exec("apt-get", ["install", "-y", pkg], { env: aptEnv });
      }
      log(r.code === 0 ? `installed ${pkg}` : `apt-get install ${pkg} failed: ${r.stderr.trim().split("\n").slice(-2).join(" | ")}`);
      if (r.code !== 0 || !hasCommand(name)) t.note = `missing: apt-get install ${pkg} failed`;
    }
    if (!hasCommand(name)) {
      log(`${name}: ${t.note}; going on without it`);
      return t;
    }
  }
  const v = execSync(name, name === "restic" ? ["version"] : ["--version"]);
  t.version = v.stdout.split("\n")[0]!.split(" ").slice(0, 2).join(" ");
  t.available = true;
  return t;
}

// ---------------------------------------------------------------- timed runs

const TIME_BIN = fs.existsSync("/usr/bin/time") ? "/usr/bin/time" : null;

async function runTimed(t: Tool, c: Cmd, timeFile: string): Promise<Measure & { stderr: string; stdout: string }> {
  const env = toolEnv(t);
  fs.rmSync(timeFile, { force: true });
  const r = TIME_BIN
    ? await exec(TIME_BIN, ["-o", timeFile, "-f", "%e %M %U %S", c.cmd, ...c.args], { cwd: c.cwd, env })
    : await exec(c.cmd, c.args, { cwd: c.cwd, env });
  let rss: number | null = null;
  let cpu: number | null = null;
  if (TIME_BIN && fs.existsSync(timeFile)) {
    const lines = fs.readFileSync(timeFile, "utf8").trim().split("\n");
    const f = (lines[lines.length - 1] ?? "").split(" ").map(Number);
    if (f.length === 4 && f.every(Number.isFinite)) {
      rss = f[1]! * KiB;
      cpu = f[2]! + f[3]!;
    }
  }
  return { round: 0, wall: r.wall, rss, cpu, code: r.code, stderr: r.stderr, stdout: r.stdout };
}

function fmtSecs(s: number): string {
  return s < 10 ? s.toFixed(2) : s < 100 ? s.toFixed(1) : s.toFixed(0);
}

function fmtMiB(b: number): string {
  const m = b / MiB;
  return m < 10 ? m.toFixed(2) : m < 100 ? m.toFixed(1) : m.toFixed(0);
}

// ---------------------------------------------------------------- the 1% change

interface Change {
  rel: string;
  stash: string;
  atime: Date;
  mtime: Date;
}

function pickChanged(root: string, percent: number, seed: string): string[] {
  const candidates: string[] = [];
  walk(root, (rel, st) => {
    if (st.isFile()) candidates.push(rel);
  });
  candidates.sort();
  const k = Math.min(candidates.length, Math.max(1, Math.round((candidates.length * percent) / 100)));
  const rng = new Rng(`${seed}/change`);
  for (let i = 0; i < k; i++) {
    const j = i + rng.int(candidates.length - i);
    const tmp = candidates[i]!;
    candidates[i] = candidates[j]!;
    candidates[j] = tmp;
  }
  return candidates.slice(0, k).sort();
}

/** Overwrites 32 bytes at a seeded offset and appends 32 bytes, in place; stashes the original first. */
function applyChange(root: string, rels: readonly string[], stashDir: string, seed: string): Change[] {
  const rng = new Rng(`${seed}/change-bytes`);
  const changes: Change[] = [];
  fs.mkdirSync(stashDir, { recursive: true });
  rels.forEach((rel, i) => {
    const abs = path.join(root, rel);
    const st = fs.statSync(abs);
    const stash = path.join(stashDir, String(i));
    fs.copyFileSync(abs, stash);
    changes.push({ rel, stash, atime: st.atime, mtime: st.mtime });
    const patch = Buffer.alloc(32);
    for (let j = 0; j < 32; j++) patch[j] = rng.int(256);
    const fd = fs.openSync(abs, "r+");
    try {
      if (st.size >= 64) fs.writeSync(fd, patch, 0, 32, rng.int(st.size - 32));
      fs.writeSync(fd, patch.reverse(), 0, 32, st.size);
    } finally {
      fs.closeSync(fd);
    }
  });
  return changes;
}

function revertChange(root: string, changes: readonly Change[]): void {
  for (const c of changes) {
    const abs = path.join(root, c.rel);
    fs.copyFileSync(c.stash, abs);
    fs.utimesSync(abs, c.atime, c.mtime);
    fs.rmSync(c.stash, { force: true });
  }
}

// ---------------------------------------------------------------- report

function median(xs: readonly number[]): number | null {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return null;
  const m = Math.floor(v.length / 2);
  return v.length % 2 ? v[m]! : (v[m - 1]! + v[m]!) / 2;
}

interface Row {
  label: string;
  better: "lower" | "higher";
  values: Partial<Record<ToolName, number | null>>;
  fmt: (n: number) => string;
  goal: string;
  met: ((coffer: number, ratio: number | null) => boolean) | null;
}

interface RowOut {
  label: string;
  values: Partial<Record<ToolName, number | null>>;
  bestPeer: { tool: ToolName; value: number } | null;
  ratio: number | null;
  goal: string;
  met: boolean | null;
}

function evalRow(r: Row): RowOut {
  let best: { tool: ToolName; value: number } | null = null;
  for (const p of ["restic", "borg"] as const) {
    const v = r.values[p];
    if (v === null || v === undefined) continue;
    if (best === null || (r.better === "lower" ? v < best.value : v > best.value)) best = { tool: p, value: v };
  }
  const c = r.values.coffer;
  const ratio = c !== null && c !== undefined && best !== null && best.value > 0 ? c / best.value : null;
  const met = r.met && c !== null && c !== undefined ? r.met(c, ratio) : null;
  return { label: r.label, values: r.values, bestPeer: best, ratio, goal: r.goal, met };
}

// ---------------------------------------------------------------- main

async function main(): Promise<number> {
  const opts = parseArgs(process.argv.slice(2));
  keepWorkDir = opts.keep;
  for (const s of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.on(s, () => void stop(s));
  process.on("exit", () => {
    killChildren();
    cleanup();
  });

  fs.mkdirSync(opts.tmpBase, { recursive: true });
  const work = fs.mkdtempSync(path.join(opts.tmpBase, "coffer-bench-"));
  workDir = work;
  log(`work directory ${work}${opts.quick ? " (quick mode: times are not judged)" : ""}`);

  // machine
  const cpuinfo = fs.existsSync("/proc/cpuinfo") ? fs.readFileSync("/proc/cpuinfo", "utf8") : "";
  const machine = {
    nproc: os.availableParallelism(),
    memoryBytes: os.totalmem(),
    cpu: /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1]?.trim() ?? os.cpus()[0]?.model ?? "unknown",
    kernel: `${os.type()} ${os.release()}`,
    fs: execSync("df", ["--output=fstype", work]).stdout.split("\n").pop() ?? "unknown",
    device: execSync("df", ["--output=source", work]).stdout.split("\n").pop() ?? "unknown",
    host: os.hostname(),
  };
  log(`machine: ${machine.nproc} CPUs (${machine.cpu}), ${fmtMiB(machine.memoryBytes)} MiB RAM, ${machine.kernel}, ${machine.fs} on ${machine.device}`);

  // tools
  const tools: Tool[] = [];
  for (const name of opts.tools) {
    const home = path.join(work, `home-${name}`);
    const t = await setupTool(name, opts, home);
    tools.push(t);
    log(`${name}: ${t.available ? t.version : `MISSING (${t.note})`}`);
  }
  const failures: string[] = [];
  const coffer = tools.find((t) => t.name === "coffer");
  if (coffer && !coffer.available) failures.push(`coffer unavailable: ${coffer.note}`);
  const active = tools.filter((t) => t.available);
  if (!TIME_BIN) log("no /usr/bin/time: peak RSS and CPU time are not measured");

  // corpus (always a private copy: the 1% change edits it in place and reverts it)
  const corpus = path.join(work, "corpus");
  let corpusSource: string;
  if (opts.corpusDir !== null) {
    log(`copying ${opts.corpusDir} to the work directory (cp -a)`);
    const r = await exec("cp", ["-a", "--", opts.corpusDir, corpus]);
    if (r.code !== 0) throw new Error(`cp -a ${opts.corpusDir} failed: ${r.stderr.trim()}`);
    corpusSource = `copy of ${opts.corpusDir}`;
  } else {
    log(`generating a ${fmtMiB(opts.corpusSize)} MiB corpus (seed ${opts.seed})`);
    fs.mkdirSync(corpus);
    generateCorpus(corpus, opts.corpusSize, opts.seed);
    corpusSource = `generated (seed "${opts.seed}", target ${fmtMiB(opts.corpusSize)} MiB: ~22% source-like text, ~20% logs, ~33% random binaries, ~15% exact duplicates (files and a directory), ~10% near-duplicates, plus empty files/dirs, symlinks, hard links, deep and unicode names)`;
  }
  const stats = corpusStats(corpus);
  log(`corpus: ${stats.files} files, ${stats.dirs} dirs, ${stats.symlinks} symlinks, ${fmtMiB(stats.bytes)} MiB`);
  const changed = pickChanged(corpus, opts.changePercent, opts.seed);
  log(`change phase: ${changed.length} files (${opts.changePercent}%) get 32 bytes overwritten and 32 appended`);

  // big file
  const bigDir = path.join(work, "big");
  const bigFile = path.join(bigDir, "big.bin");
  /**
   * The ceiling, measured before the rounds and again in each round just
   * before the big file's backups (the machine's speed varies 2x in a day):
   * each tool's throughput is compared with its own round's.
   */
  const ceilings: Ceiling[] = [];
  const roundCeiling = new Map<number, Ceiling>();
  if (opts.bigSize > 0) {
    log(`generating the big file: ${fmtMiB(opts.bigSize)} MiB (first half text, second half random)`);
    fs.mkdirSync(bigDir);
    await generateBigFile(bigFile, opts.bigSize, opts.seed);
    log("measuring the zstd-3 + AES-256-GCM ceiling on the big file's content");
    const c = await measureCeiling(bigFile, opts.bigSize, machine.nproc);
    ceilings.push(c);
    log(`ceiling: ${c.singleMiBs.toFixed(0)} MiB/s on 1 thread, ${c.allMiBs.toFixed(0)} MiB/s on ${c.threads}; sample compresses to ${((100 * c.compressedBytes) / c.sampleBytes).toFixed(0)}%`);
  }

  const timeFile = path.join(work, "time.txt");
  const repos = path.join(work, "repos");
  const catFloor: Measure[] = [];
  const restoreChecks: { round: number; tool: ToolName; ok: boolean; detail: string }[] = [];
  let resticRepoVersion = "compression auto";
  let cofferEncryption = "defaults";

  const fail = (t: Tool, what: string, r: { code: number; stderr: string }): void => {
    t.failed = true;
    const tail = r.stderr.trim().split("\n").slice(-5).join(" | ");
    failures.push(`${t.name}: ${what} exited ${r.code}: ${tail}`);
    log(`FAILED ${t.name} ${what} (exit ${r.code}): ${tail}`);
  };

  const timed = async (t: Tool, phase: Phase, round: number, c: Cmd): Promise<boolean> => {
    await dropCaches(opts.dropCaches);
    await exec(warmCmd(t).cmd, warmCmd(t).args, { env: toolEnv(t), stdout: "ignore" });
    const m = await runTimed(t, c, timeFile);
    // borg: 1 = finished with warnings (e.g. a file changed while read); coffer/restic: 3 = some entries unreadable
    const ok = m.code === 0 || (t.name === "borg" && m.code === 1);
    if (!ok) {
      fail(t, `${PHASE_LABEL[phase]} (round ${round})`, m);
      return false;
    }
    if (m.code !== 0) log(`${t.name}: ${PHASE_LABEL[phase]} finished with warnings (exit ${m.code})`);
    t.measures[phase].push({ round, wall: m.wall, rss: m.rss, cpu: m.cpu, code: m.code });
    log(`round ${round} ${PHASE_LABEL[phase]}: ${t.name} ${fmtSecs(m.wall)} s` + (m.rss !== null ? `, peak RSS ${fmtMiB(m.rss)} MiB` : "") + (m.cpu !== null ? `, CPU ${fmtSecs(m.cpu)} s` : ""));
    return true;
  };

  for (let round = 1; round <= opts.rounds; round++) {
    // alternate: each round starts with the next tool
    const order = active.map((_, i) => active[(i + round - 1) % active.length]!);
    log(`round ${round}/${opts.rounds}: order ${order.map((t) => t.name).join(", ")}`);
    fs.mkdirSync(repos, { recursive: true });
    const repoOf = (t: Tool): string => path.join(repos, t.name);
    for (const t of order) {
      rmrf(t.home);
      fs.mkdirSync(t.home, { recursive: true });
      const c = initCmd(t, repoOf(t));
      const r = await exec(c.cmd, c.args, { cwd: c.cwd, env: toolEnv(t) });
      if (r.code !== 0) fail(t, `repository init (round ${round})`, r);
      else if (t.name === "restic" && round === 1) {
        const cfg = await exec("restic", ["-r", repoOf(t), "cat", "config"], { env: toolEnv(t) });
        const v = /"version":\s*(\d+)/.exec(cfg.stdout)?.[1];
        if (v !== undefined) resticRepoVersion = `repository v${v}` + (v === "1" ? ", no compression" : ", compression auto");
      } else if (t.name === "coffer" && round === 1) {
        const info = await exec(process.execPath, [COFFER_BIN, "at", repoOf(t), "info", "--json"], { env: toolEnv(t) });
        try {
          cofferEncryption = String((JSON.parse(info.stdout) as { encryption?: unknown }).encryption);
        } catch {
          log(`coffer info --json gave no JSON (exit ${info.code}): the settings line says "defaults"`);
        }
      }
    }
    const live = (): Tool[] => order.filter((t) => !t.failed);

    for (const t of live()) {
      t.lastArchive = `r${round}-first`;
      if (await timed(t, "first", round, backupCmd(t, repoOf(t), work, "corpus", t.lastArchive))) {
        t.repoSize.push(duBytes(repoOf(t)));
        t.cacheSize.push(duBytes(t.home));
        log(`round ${round} repository size: ${t.name} ${fmtMiB(t.repoSize[t.repoSize.length - 1]!)} MiB (client cache/config ${fmtMiB(t.cacheSize[t.cacheSize.length - 1]!)} MiB)`);
      }
    }
    for (const t of live()) {
      t.lastArchive = `r${round}-nochange`;
      await timed(t, "nochange", round, backupCmd(t, repoOf(t), work, "corpus", t.lastArchive));
    }
    const stash = path.join(work, "stash");
    const changes = applyChange(corpus, changed, stash, opts.seed);
    try {
      for (const t of live()) {
        t.lastArchive = `r${round}-change`;
        await timed(t, "change", round, backupCmd(t, repoOf(t), work, "corpus", t.lastArchive));
      }
      // restore the latest snapshot (the changed tree) and compare it with the corpus as it is now
      for (const t of live()) {
        const dir = path.join(work, "restore");
        rmrf(dir);
        fs.mkdirSync(dir);
        if (await timed(t, "restore", round, restoreCmd(t, repoOf(t), dir))) {
          const got = restoredRoot(t, dir, "corpus");
          const d = await exec("diff", ["-r", "-q", "--no-dereference", corpus, got]);
          const ok = d.code === 0;
          const detail = ok ? "identical (diff -r --no-dereference)" : (d.stdout + d.stderr).trim().split("\n").slice(0, 10).join("\n");
          restoreChecks.push({ round, tool: t.name, ok, detail });
          if (!ok) {
            t.failed = true;
            failures.push(`${t.name}: restore (round ${round}) differs from the corpus:\n${detail}`);
            log(`RESTORE DIFFERS ${t.name}:\n${detail}`);
          } else log(`round ${round} restore check: ${t.name} identical`);
        }
        rmrf(dir);
      }
    } finally {
      revertChange(corpus, changes);
      rmrf(stash);
    }

    if (opts.bigSize > 0) {
      await dropCaches(opts.dropCaches);
      const r = await exec("cat", [bigFile], { stdout: "ignore" });
      catFloor.push({ round, wall: r.wall, rss: null, cpu: null, code: r.code });
      log(`round ${round} big file floor: cat ${fmtSecs(r.wall)} s = ${(opts.bigSize / MiB / r.wall).toFixed(0)} MiB/s`);
      const c = await measureCeiling(bigFile, opts.bigSize, machine.nproc);
      ceilings.push(c);
      roundCeiling.set(round, c);
      log(`round ${round} ceiling: ${c.allMiBs.toFixed(0)} MiB/s on ${c.threads} threads`);
      for (const t of live()) {
        const repo = path.join(repos, `${t.name}-big`);
        const c = initCmd(t, repo);
        const ri = await exec(c.cmd, c.args, { cwd: c.cwd, env: toolEnv(t) });
        if (ri.code !== 0) {
          fail(t, `big-file repository init (round ${round})`, ri);
          continue;
        }
        if (await timed(t, "big", round, backupCmd(t, repo, work, "big", `r${round}-big`))) {
          const m = t.measures.big[t.measures.big.length - 1]!;
          log(`round ${round} big file: ${t.name} ${(opts.bigSize / MiB / m.wall).toFixed(0)} MiB/s`);
        }
        rmrf(repo);
      }
    }
    rmrf(repos);
    for (const t of order) rmrf(t.home);
  }

  // ------------------------------------------------------------ results
  const med = (t: Tool, phase: Phase, f: (m: Measure) => number | null): number | null =>
    t.available ? median(t.measures[phase].map(f).filter((x): x is number => x !== null)) : null;
  const per = (f: (t: Tool) => number | null): Partial<Record<ToolName, number | null>> => {
    const out: Partial<Record<ToolName, number | null>> = {};
    for (const t of tools) out[t.name] = f(t);
    return out;
  };
  const secs = (n: number): string => fmtSecs(n);
  const mib = (n: number): string => fmtMiB(n);
  const timeGoal = (g: number) => (_c: number, ratio: number | null): boolean => ratio !== null && ratio <= g;
  const rssGoal = (c: number): boolean => c <= 256 * MiB;
  const bigMiBs = (t: Tool): number | null => {
    const w = med(t, "big", (m) => m.wall);
    return w === null || w <= 0 ? null : opts.bigSize / MiB / w;
  };
  const rows: Row[] = [
    { label: "first backup (s)", better: "lower", values: per((t) => med(t, "first", (m) => m.wall)), fmt: secs, goal: "≤ 1.00x", met: timeGoal(1) },
    { label: "no-change backup (s)", better: "lower", values: per((t) => med(t, "nochange", (m) => m.wall)), fmt: secs, goal: "≤ 1.00x", met: timeGoal(1) },
    { label: `${opts.changePercent}% change backup (s)`, better: "lower", values: per((t) => med(t, "change", (m) => m.wall)), fmt: secs, goal: "", met: null },
    { label: "restore (s)", better: "lower", values: per((t) => med(t, "restore", (m) => m.wall)), fmt: secs, goal: "≤ 1.00x", met: timeGoal(1) },
    { label: "repository size after first backup (MiB)", better: "lower", values: per((t) => (t.available ? median(t.repoSize) : null)), fmt: mib, goal: "≤ 1.05x", met: timeGoal(1.05) },
    { label: "client cache/config after first backup (MiB)", better: "lower", values: per((t) => (t.available ? median(t.cacheSize) : null)), fmt: mib, goal: "", met: null },
  ];
  if (TIME_BIN) {
    for (const p of PHASES) {
      if (p === "big" && opts.bigSize === 0) continue;
      rows.push({ label: `peak RSS, ${PHASE_LABEL[p]} (MiB)`, better: "lower", values: per((t) => med(t, p, (m) => m.rss)), fmt: mib, goal: "≤ 256 MiB", met: rssGoal });
    }
    rows.push({ label: "CPU time (user+sys), first backup (s)", better: "lower", values: per((t) => med(t, "first", (m) => m.cpu)), fmt: secs, goal: "", met: null });
  }
  const ceiling = ceilings.reduce<Ceiling | null>((best, c) => (best === null || c.allMiBs > best.allMiBs ? c : best), null);
  /** Each round's big-file throughput over that round's ceiling (as fractions). */
  const ceilingShares = (t: Tool): { round: number; miBs: number; ceiling: number; share: number }[] =>
    t.measures.big.flatMap((m) => {
      const c = roundCeiling.get(m.round);
      const miBs = opts.bigSize / MiB / m.wall;
      return c && m.wall > 0 ? [{ round: m.round, miBs, ceiling: c.allMiBs, share: miBs / c.allMiBs }] : [];
    });
  const cofferShare = coffer ? median(ceilingShares(coffer).map((r) => r.share)) : null;
  if (opts.bigSize > 0) {
    rows.push({ label: `big file (${fmtMiB(opts.bigSize)} MiB) backup (s)`, better: "lower", values: per((t) => med(t, "big", (m) => m.wall)), fmt: secs, goal: "", met: null });
    rows.push({
      label: "big file backup throughput (MiB/s)",
      better: "higher",
      values: per(bigMiBs),
      fmt: (n) => n.toFixed(0),
      goal: cofferShare !== null ? `≥ 60% of the round's ceiling (median ${(100 * cofferShare).toFixed(0)}%)` : "",
      met: cofferShare !== null ? () => cofferShare >= 0.6 : null,
    });
  }
  const out = rows.map(evalRow);

  const catMed = median(catFloor.map((m) => m.wall));
  const date = new Date();
  const shown = tools.map((t) => t.name);
  const cell = (r: Row, v: number | null | undefined): string => (v === null || v === undefined ? "—" : r.fmt(v));
  const md: string[] = [];
  md.push(`# coffer benchmark${opts.quick ? " (quick smoke run: figures not meaningful)" : ""}`);
  md.push("");
  md.push(`${date.toISOString()} · ${opts.rounds} round${opts.rounds > 1 ? "s" : ""} (medians) · \`npm run bench -- ${process.argv.slice(2).join(" ")}\``);
  md.push("");
  md.push(`- **Machine**: ${machine.nproc} CPUs (${machine.cpu}), ${(machine.memoryBytes / GiB).toFixed(1)} GiB RAM, ${machine.kernel}, work directory on ${machine.fs} (${machine.device})`);
  md.push(`- **Tools**: ${tools.map((t) => (t.available ? t.version : `${t.name}: missing (${t.note})`)).join("; ")}`);
  md.push(`- **Corpus**: ${corpusSource}: ${stats.files} files, ${stats.dirs} directories, ${stats.symlinks} symlinks, ${stats.others} other entries, ${stats.hardlinks} extra hard links, ${stats.bytes} bytes (${fmtMiB(stats.bytes)} MiB)`);
  md.push(`- **Change phase**: ${changed.length} files (${opts.changePercent}%, seeded choice), 32 bytes overwritten at a seeded offset and 32 appended, in place; reverted after the round`);
  md.push(`- **Settings**: all repositories encrypted, each tool with a fresh repository per round on the same disk; every tool with the defaults a user gets: coffer \`create\` with no KDF flags (${cofferEncryption}); restic \`init\` defaults (${resticRepoVersion}); borg \`init --encryption repokey-blake2\` (borg has no default mode; this is one of the two its docs suggest) and \`create\` defaults (lz4 compression). Each tool has its own HOME in the work directory, so its cache starts empty; the cache is not part of the repository size (see the client cache row).`);
  md.push(`- **Cache**: ${warmCache ? `**warm cache** (${warmReason})` : "page cache dropped (`sync; echo 3 > /proc/sys/vm/drop_caches`) before each timed run, then the tool's own program warmed with its version/help command"}. Times are wall-clock seconds of the whole command; peak RSS from \`/usr/bin/time -f %M\`. Other load on the machine makes the figures indicative.`);
  md.push("");
  md.push(`| phase | ${shown.join(" | ")} | best peer | coffer / best | goal (issue 5) |`);
  md.push(`|---|${shown.map(() => "---:").join("|")}|---:|---:|---|`);
  for (let i = 0; i < rows.length; i++) {
    const r = rows[i]!;
    const o = out[i]!;
    const best = o.bestPeer ? `${r.fmt(o.bestPeer.value)} (${o.bestPeer.tool})` : "—";
    const ratio = o.ratio !== null ? `${o.ratio.toFixed(2)}x` : "—";
    const goal = r.goal === "" ? "" : opts.quick || o.met === null ? r.goal : `${r.goal} ${o.met ? "✓" : "✗"}`;
    md.push(`| ${r.label} | ${shown.map((n) => cell(r, r.values[n])).join(" | ")} | ${best} | ${ratio} | ${goal} |`);
  }
  md.push("");
  md.push("Lower is better except throughput; `coffer / best` below 1.00x means coffer is ahead (above 1.00x for throughput).");
  if (opts.bigSize > 0) {
    md.push("");
    md.push(`Big file (${fmtMiB(opts.bigSize)} MiB: first half seeded text, second half random):`);
    if (catMed !== null) md.push(`- floor: \`cat FILE > /dev/null\` ${fmtSecs(catMed)} s = ${(opts.bigSize / MiB / catMed).toFixed(0)} MiB/s`);
    if (ceiling) {
      md.push(
        `- ceiling: zstd level 3 + AES-256-GCM over 1 MiB pieces of the file's content (${fmtMiB(ceiling.sampleBytes)} MiB sample, compresses to ${((100 * ceiling.compressedBytes) / ceiling.sampleBytes).toFixed(0)}%), in-process, on ${ceiling.threads} threads: measured before the rounds and in each round before the big file's backups: ${ceilings.map((c) => c.allMiBs.toFixed(0)).join(", ")} MiB/s (the highest on 1 thread: ${ceiling.singleMiBs.toFixed(0)} MiB/s)`,
      );
      const shares = coffer ? ceilingShares(coffer) : [];
      const c = coffer ? bigMiBs(coffer) : null;
      if (shares.length > 0 && cofferShare !== null && c !== null) {
        md.push(
          `- coffer against its round's ceiling: ${shares.map((r) => `r${r.round} ${r.miBs.toFixed(0)} / ${r.ceiling.toFixed(0)} = ${(100 * r.share).toFixed(0)}%`).join(", ")}; median ${(100 * cofferShare).toFixed(0)}% (its median throughput is ${((100 * c) / ceiling.allMiBs).toFixed(0)}% of the highest ceiling)`,
        );
      }
    }
  }
  md.push("");
  md.push("Restore checks: " + (restoreChecks.length === 0 ? "none ran" : restoreChecks.map((c) => `${c.tool} r${c.round} ${c.ok ? "identical" : "DIFFERS"}`).join(", ")) + ".");
  if (failures.length > 0) {
    md.push("");
    md.push("## Failures");
    for (const f of failures) md.push(`- ${f.replace(/\n/g, "\n  ")}`);
  }
  md.push("");

  const json = {
    date: date.toISOString(),
    command: `npm run bench -- ${process.argv.slice(2).join(" ")}`.trim(),
    quick: opts.quick,
    rounds: opts.rounds,
    machine,
    cache: warmCache ? { warm: true, reason: warmReason } : { warm: false, reason: "dropped before each timed run" },
    tools: Object.fromEntries(tools.map((t) => [t.name, { available: t.available, version: t.version, note: t.note, failed: t.failed }])),
    corpus: { source: corpusSource, seed: opts.corpusDir === null ? opts.seed : null, ...stats, changedFiles: changed.length, changePercent: opts.changePercent },
    bigFile: opts.bigSize > 0 ? { bytes: opts.bigSize, catSeconds: catFloor.map((m) => m.wall), ceiling, ceilings, cofferShares: coffer ? ceilingShares(coffer) : [] } : null,
    table: out,
    raw: Object.fromEntries(tools.map((t) => [t.name, { measures: t.measures, repoSizeBytes: t.repoSize, clientCacheBytes: t.cacheSize }])),
    restoreChecks,
    failures,
    units: { seconds: "wall-clock seconds", sizes: "bytes in raw, MiB in table labels", rss: "bytes in raw", throughput: "MiB/s" },
  };

  fs.mkdirSync(opts.outDir, { recursive: true });
  const written: string[] = [];
  const save = (name: string, body: string): void => {
    const p = path.join(opts.outDir, name);
    fs.writeFileSync(p, body);
    written.push(path.relative(process.cwd(), p) || p);
  };
  const mdText = md.join("\n");
  const jsonText = `${JSON.stringify(json, null, 2)}\n`;
  if (opts.quick) {
    save("quick.md", mdText);
    save("quick.json", jsonText);
  } else {
    const stamp = date.toISOString().replace(/\.\d+Z$/, "Z").replace(/:/g, "-");
    save("latest.md", mdText);
    save("latest.json", jsonText);
    save(`${stamp}.md`, mdText);
    save(`${stamp}.json`, jsonText);
  }
  process.stdout.write(`${mdText}\n`);
  log(`wrote ${written.join(", ")}`);
  if (failures.length > 0) log(`${failures.length} failure(s): exit 1`);
  return failures.length > 0 ? 1 : 0;
}

main().then(
  (code) => {
    cleanup();
    process.exit(code);
  },
  (e: unknown) => {
    if (stopping) return;
    log(`error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
    killChildren();
    cleanup();
    process.exit(1);
  },
);
