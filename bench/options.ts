// The command line: options, their defaults (smaller with --quick) and the
// help text. parseArgs is pure but for statting the corpus directory: a bad
// option throws a UsageError, which run.ts prints with the help (exit 2).

import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { ROOT } from "./process.ts";
import { ALL_TOOLS, REMOTE_STORES } from "./tools.ts";
import type { RemoteStore, ToolName } from "./tools.ts";
import { GiB, KiB, MiB } from "./units.ts";

/** Where the repositories are: the local disk, or a remote store on its server on 127.0.0.1. */
export type StoreName = "local" | RemoteStore;
export const ALL_STORES: readonly StoreName[] = ["local", ...REMOTE_STORES];

export interface Options {
  quick: boolean;
  rounds: number;
  corpusDir: string | null;
  corpusSize: number;
  bigSize: number;
  seed: string;
  tools: ToolName[];
  stores: StoreName[];
  install: boolean;
  outDir: string;
  tmpBase: string;
  keep: boolean;
  changePercent: number;
  dropCaches: boolean;
}

export class UsageError extends Error {}

export const HELP = `usage: npm run bench -- [options] [CORPUS_DIR]

Benchmarks coffer against restic and borg on the same tree: first backup,
no-change backup, backup after changing 1% of the files, full restore,
repository size, peak RSS, and one big file's backup throughput; then
against S3 (Ceph radosgw) and SFTP (OpenSSH) servers it starts on
127.0.0.1, coffer and restic's first and no-change backups and restores of
the tree, and the big file's backup and restore.
Without CORPUS_DIR a seeded corpus is generated. CORPUS_DIR is never
modified: it is copied (cp -a) into the temporary directory first.

options:
  --quick              smoke test: 1 round, 20M corpus, 64M big file; writes quick.md/quick.json
  --rounds N           rounds (default 3; --quick: 1)
  --corpus-size SIZE   generated corpus size (default 300M; --quick: 20M)
  --big-size SIZE      big single file size (default 2G; --quick: 64M; 0 skips the phase)
  --seed S             seed of the generated data (default coffer-bench-1)
  --tools LIST         comma-separated subset of coffer,restic,borg (default: all)
  --stores LIST        comma-separated subset of local,s3,sftp (default: all; --quick: local)
  --change-percent P   share of the files changed for the "1% change" phase (default 1)
  --no-install         do not apt-get install missing restic/borg
  --no-drop-caches     keep the page cache (the report says "warm cache")
  --tmp DIR            where the work directory is created (default: $TMPDIR or /tmp)
  --out DIR            where results are written (default: bench/results)
  --keep               keep the work directory (for debugging)
SIZE takes K, M, G suffixes (binary: 1M = 1 MiB).
`;

/** A size with an optional binary K, M, G or T suffix (1M = 1 MiB). */
export function parseSize(s: string, what: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?$/i.exec(s.trim());
  if (!m) usage(`bad size for ${what}: ${s}`);
  const mult: Record<string, number> = { "": 1, k: KiB, m: MiB, g: GiB, t: 1024 * GiB };
  return Math.round(Number(m[1]) * (mult[(m[2] ?? "").toLowerCase()] ?? 1));
}

function usage(msg: string): never {
  throw new UsageError(msg);
}

/** The options of `argv` (without node and the script), or "help" at -h/--help. */
export function parseArgs(argv: readonly string[]): Options | "help" {
  let quick = false;
  let rounds: number | null = null;
  let corpusSize: number | null = null;
  let bigSize: number | null = null;
  let corpusDir: string | null = null;
  let stores: StoreName[] | null = null;
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
        return "help";
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
      case "--stores": {
        const list = val().split(",").map((s) => s.trim()).filter(Boolean);
        for (const s of list) if (!ALL_STORES.includes(s as StoreName)) usage(`unknown store ${s}`);
        if (list.length === 0) usage("--stores needs at least one of local,s3,sftp");
        stores = ALL_STORES.filter((s) => list.includes(s));
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
    stores: stores ?? (quick ? ["local"] : [...ALL_STORES]),
    rounds: rounds ?? (quick ? 1 : 3),
    corpusSize: corpusSize ?? (quick ? 20 * MiB : 300 * MiB),
    bigSize: bigSize ?? (quick ? 64 * MiB : 2 * GiB),
  };
}
