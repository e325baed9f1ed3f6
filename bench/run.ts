// bench/run.ts — side-by-side benchmark of coffer, restic and borg (issue 5),
// and of coffer and restic on S3 and SFTP servers (issue 18).
//
//   npm run bench                       generated, seeded corpus (~300 MiB), 3 rounds, 2 GiB big file
//   npm run bench -- /usr/share         any directory (copied first: the 1% change phase edits the copy)
//   npm run bench -- --quick            smoke test: 1 round, ~20 MiB corpus, 64 MiB big file
//   npm run bench -- --help             all options
//
// Runs under Node 24 with type stripping: erasable TypeScript only (no enums,
// namespaces or parameter properties), local imports with their ".ts"
// extension. This file wires the modules beside it (bench/README.md). Times
// are reported, never judged: the exit code is 1 only when a tool fails or a
// restore differs from the corpus.

import * as path from "node:path";
import { pickChanged } from "./change.ts";
import { describeMachine, measureCeiling } from "./ceiling.ts";
import type { Ceiling } from "./ceiling.ts";
import { prepareBigFile, prepareCorpus } from "./corpus.ts";
import { HELP, UsageError, parseArgs } from "./options.ts";
import type { Options } from "./options.ts";
import { cleanup, createWorkDir, handleSignals, isStopping, killChildren, log } from "./process.ts";
import { runRemote } from "./remote.ts";
import { buildReport, writeReport } from "./report.ts";
import { PageCache, TIME_BIN, runRounds } from "./runs.ts";
import type { RoundsResult } from "./runs.ts";
import { setupTool } from "./tools.ts";
import type { Tool } from "./tools.ts";
import { fmtMiB } from "./units.ts";

/** The options, or the exit: 0 after --help, 2 (with the help) on a usage error. */
function options(argv: readonly string[]): Options {
  try {
    const o = parseArgs(argv);
    if (o !== "help") return o;
    process.stdout.write(HELP);
    process.exit(0);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    process.stderr.write(`bench: ${e.message}\n\n${HELP}`);
    process.exit(2);
  }
}

async function main(): Promise<number> {
  const argv = process.argv.slice(2);
  const opts = options(argv);
  handleSignals();
  const work = createWorkDir(opts.tmpBase, opts.keep);
  log(`work directory ${work}${opts.quick ? " (quick mode: times are not judged)" : ""}`);

  const machine = describeMachine(work);
  log(`machine: ${machine.nproc} CPUs (${machine.cpu}), ${fmtMiB(machine.memoryBytes)} MiB RAM, ${machine.kernel}, ${machine.fs} on ${machine.device}`);

  const tools: Tool[] = [];
  for (const name of opts.tools) {
    const t = await setupTool(name, opts.install, path.join(work, `home-${name}`));
    tools.push(t);
    log(`${name}: ${t.available ? t.version : `MISSING (${t.note})`}`);
  }
  const failures: string[] = [];
  const coffer = tools.find((t) => t.name === "coffer");
  if (coffer && !coffer.available) failures.push(`coffer unavailable: ${coffer.note}`);
  if (!TIME_BIN) log("no /usr/bin/time: peak RSS and CPU time are not measured");

  const corpus = await prepareCorpus(path.join(work, "corpus"), opts.corpusDir, opts.corpusSize, opts.seed);
  const changed = pickChanged(corpus.dir, opts.changePercent, opts.seed);
  log(`change phase: ${changed.length} files (${opts.changePercent}%) get 32 bytes overwritten and 32 appended`);

  const local = opts.stores.includes("local");
  const bigFile = path.join(work, "big", "big.bin");
  let firstCeiling: Ceiling | null = null;
  if (opts.bigSize > 0) await prepareBigFile(path.dirname(bigFile), opts.bigSize, opts.seed);
  if (opts.bigSize > 0 && local) {
    log("measuring the zstd-3 + AES-256-GCM ceiling on the big file's content");
    const c = await measureCeiling(bigFile, opts.bigSize, machine.nproc);
    firstCeiling = c;
    log(`ceiling: ${c.singleMiBs.toFixed(0)} MiB/s on 1 thread, ${c.allMiBs.toFixed(0)} MiB/s on ${c.threads}; sample compresses to ${((100 * c.compressedBytes) / c.sampleBytes).toFixed(0)}%`);
  }

  const cache = new PageCache(opts.dropCaches);
  const active = tools.filter((t) => t.available);
  const rounds: RoundsResult = local
    ? await runRounds({ opts, work, tools: active, corpus: corpus.dir, changed, bigFile, nproc: machine.nproc, cache, failures })
    : { catFloor: [], roundCeiling: new Map(), restoreChecks: [], failures, settings: {} };
  const remote = await runRemote({ opts, work, tools: active, corpus: corpus.dir, bigFile, cache, result: rounds });

  const date = new Date();
  const report = buildReport({
    opts,
    argv,
    date,
    machine,
    tools,
    corpus,
    changedFiles: changed.length,
    firstCeiling,
    rounds,
    remote,
    cache: { warm: cache.warm, reason: cache.reason },
    timed: TIME_BIN !== null,
  });
  const written = writeReport(opts.outDir, opts.quick, date, report);
  process.stdout.write(`${report.markdown}\n`);
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
    if (isStopping()) return;
    log(`error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
    killChildren();
    cleanup();
    process.exit(1);
  },
);
