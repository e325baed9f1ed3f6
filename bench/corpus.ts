// The trees the tools back up: a private copy of the given directory or a
// seeded generated corpus, its statistics, and the big file (first half
// seeded text, second half random).

import * as fs from "node:fs";
import * as path from "node:path";
import { exec, isStopping, log } from "./process.ts";
import { EXTS, RandomStream, Rng, SERVICES, WORDS, fillLines, ident, linePool, logLine } from "./seeded.ts";
import { KiB, MiB, fmtMiB } from "./units.ts";

export interface CorpusStats {
  files: number;
  dirs: number;
  symlinks: number;
  others: number;
  hardlinks: number; // extra names of already-counted inodes
  bytes: number; // sum of regular file sizes, by path
}

/** Visits every entry under `root` (lstat, not following links), depth first, in name order. */
export function walk(root: string, visit: (rel: string, st: fs.Stats) => void): void {
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

/** Counts the tree's entries by type, hard links by inode, and regular file bytes by path. */
export function corpusStats(root: string): CorpusStats {
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

/**
 * Generates about `target` bytes under `root`: source-like text in nested
 * directories, compressible logs, random binaries, exact and near
 * duplicates, and odd entries (empty files and dirs, symlinks, hard links,
 * deep and unusual names). The same seed gives the same tree.
 */
export function generateCorpus(root: string, target: number, seed: string): void {
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

/** Writes `size` bytes: the first half seeded text (code and log lines), the second half random. */
export async function generateBigFile(file: string, size: number, seed: string): Promise<void> {
  const rng = new Rng(`${seed}/big`);
  const rnd = new RandomStream(`${seed}/big`);
  const pool = linePool(rng, 65_536, true);
  const fd = fs.openSync(file, "w");
  const piece = 16 * MiB;
  const buf = Buffer.allocUnsafe(piece);
  const half = Math.floor(size / 2);
  try {
    for (let o = 0; o < size; ) {
      if (isStopping()) return;
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

/** What the report says of a generated corpus, after its seed and target size. */
const GENERATED_MIX =
  "~22% source-like text, ~20% logs, ~33% random binaries, ~15% exact duplicates (files and a directory), ~10% near-duplicates, plus empty files/dirs, symlinks, hard links, deep and unicode names";

export interface Corpus {
  dir: string;
  /** Where it came from, for the report. */
  source: string;
  stats: CorpusStats;
}

/**
 * The corpus in `dir`: always a private copy (cp -a of `from`) or a
 * generated tree, since the change phase edits it in place and reverts it.
 */
export async function prepareCorpus(dir: string, from: string | null, size: number, seed: string): Promise<Corpus> {
  let source: string;
  if (from !== null) {
    log(`copying ${from} to the work directory (cp -a)`);
    const r = await exec("cp", ["-a", "--", from, dir]);
    if (r.code !== 0) throw new Error(`cp -a ${from} failed: ${r.stderr.trim()}`);
    source = `copy of ${from}`;
  } else {
    log(`generating a ${fmtMiB(size)} MiB corpus (seed ${seed})`);
    fs.mkdirSync(dir);
    generateCorpus(dir, size, seed);
    source = `generated (seed "${seed}", target ${fmtMiB(size)} MiB: ${GENERATED_MIX})`;
  }
  const stats = corpusStats(dir);
  log(`corpus: ${stats.files} files, ${stats.dirs} dirs, ${stats.symlinks} symlinks, ${fmtMiB(stats.bytes)} MiB`);
  return { dir, source, stats };
}

/** Generates the big file as `dir`/big.bin and returns its path. */
export async function prepareBigFile(dir: string, size: number, seed: string): Promise<string> {
  log(`generating the big file: ${fmtMiB(size)} MiB (first half text, second half random)`);
  fs.mkdirSync(dir);
  const file = path.join(dir, "big.bin");
  await generateBigFile(file, size, seed);
  return file;
}
