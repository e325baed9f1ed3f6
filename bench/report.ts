// The report: medians over the rounds, each row's best peer and coffer's
// ratio to it against the goals of issue 5, the Markdown table and notes,
// the JSON with every raw measurement, and the files in bench/results.

import * as fs from "node:fs";
import * as path from "node:path";
import { highestCeiling } from "./ceiling.ts";
import type { Ceiling, Machine } from "./ceiling.ts";
import type { Corpus } from "./corpus.ts";
import type { Options } from "./options.ts";
import type { RemoteRun } from "./remote.ts";
import type { RoundsResult } from "./runs.ts";
import { PHASES, PHASE_LABEL, REMOTE_PHASES, STORE_LABEL, hasRemoteBackends } from "./tools.ts";
import type { Measure, Phase, RemoteStore, Tool, ToolName } from "./tools.ts";
import { GiB, MiB, fmtMiB, fmtSecs } from "./units.ts";

/** The median of the finite values (the mean of the middle two for an even count), null when there are none. */
export function median(xs: readonly number[]): number | null {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return null;
  const m = Math.floor(v.length / 2);
  return v.length % 2 ? v[m]! : (v[m - 1]! + v[m]!) / 2;
}

/** A Markdown table's lines: the header, the alignment row ("right" for numbers), the rows. */
export function markdownTable(header: readonly string[], align: readonly ("left" | "right")[], rows: readonly (readonly string[])[]): string[] {
  const line = (cells: readonly string[]): string => `| ${cells.join(" | ")} |`;
  return [line(header), `|${align.map((a) => (a === "right" ? "---:" : "---")).join("|")}|`, ...rows.map(line)];
}

export interface Row {
  label: string;
  better: "lower" | "higher";
  values: Partial<Record<ToolName, number | null>>;
  fmt: (n: number) => string;
  goal: string;
  met: ((coffer: number, ratio: number | null) => boolean) | null;
}

export interface RowOut {
  label: string;
  values: Partial<Record<ToolName, number | null>>;
  bestPeer: { tool: ToolName; value: number } | null;
  ratio: number | null;
  goal: string;
  met: boolean | null;
}

/** The row's best peer (restic or borg), coffer's ratio to it, and whether coffer meets the row's goal. */
export function evalRow(r: Row): RowOut {
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

/** One table line: the label, each tool's value ("—" for none), the best peer, the ratio, the goal (✓/✗ unless quick). */
export function formatRow(r: Row, o: RowOut, shown: readonly ToolName[], quick: boolean): string[] {
  const cell = (v: number | null | undefined): string => (v === null || v === undefined ? "—" : r.fmt(v));
  const best = o.bestPeer ? `${r.fmt(o.bestPeer.value)} (${o.bestPeer.tool})` : "—";
  const ratio = o.ratio !== null ? `${o.ratio.toFixed(2)}x` : "—";
  const goal = r.goal === "" ? "" : quick || o.met === null ? r.goal : `${r.goal} ${o.met ? "✓" : "✗"}`;
  return [r.label, ...shown.map((n) => cell(r.values[n])), best, ratio, goal];
}

export interface CeilingShare {
  round: number;
  miBs: number;
  ceiling: number;
  share: number;
}

/** Each round's big-file throughput over that round's ceiling (as fractions). */
export function ceilingShares(big: readonly Measure[], roundCeiling: ReadonlyMap<number, Ceiling>, bigSize: number): CeilingShare[] {
  return big.flatMap((m) => {
    const c = roundCeiling.get(m.round);
    const miBs = bigSize / MiB / m.wall;
    return c && m.wall > 0 ? [{ round: m.round, miBs, ceiling: c.allMiBs, share: miBs / c.allMiBs }] : [];
  });
}

/** A remote store's rows (issue 18): each phase's wall time against restic's, the big file's restore throughput, and peak RSS. */
export function remoteRows(store: RemoteStore, bigSize: number, values: (phase: Phase, f: (m: Measure) => number | null) => Partial<Record<ToolName, number | null>>, timed: boolean): Row[] {
  const S = STORE_LABEL[store];
  const secs = (n: number): string => fmtSecs(n);
  const atMost = (_c: number, ratio: number | null): boolean => ratio !== null && ratio <= 1;
  const rows: Row[] = [
    { label: `${S} first backup (s)`, better: "lower", values: values(`${store}-first`, (m) => m.wall), fmt: secs, goal: "≤ 1.00x", met: atMost },
    { label: `${S} no-change backup (s)`, better: "lower", values: values(`${store}-nochange`, (m) => m.wall), fmt: secs, goal: "≤ 1.00x", met: atMost },
    { label: `${S} restore (s)`, better: "lower", values: values(`${store}-restore`, (m) => m.wall), fmt: secs, goal: "≤ 1.00x", met: atMost },
  ];
  if (bigSize > 0) {
    rows.push({ label: `${S} big file (${fmtMiB(bigSize)} MiB) backup (s)`, better: "lower", values: values(`${store}-bigbackup`, (m) => m.wall), fmt: secs, goal: "", met: null });
    rows.push({
      label: `${S} big file restore throughput (MiB/s)`,
      better: "higher",
      values: values(`${store}-bigrestore`, (m) => (m.wall > 0 ? bigSize / MiB / m.wall : null)),
      fmt: (n) => n.toFixed(0),
      goal: "≥ 1.00x",
      met: (_c, ratio) => ratio !== null && ratio >= 1,
    });
  }
  if (timed) {
    for (const p of REMOTE_PHASES) {
      if ((p === "bigbackup" || p === "bigrestore") && bigSize === 0) continue;
      rows.push({ label: `peak RSS, ${PHASE_LABEL[`${store}-${p}`]} (MiB)`, better: "lower", values: values(`${store}-${p}`, (m) => m.rss), fmt: (n) => fmtMiB(n), goal: "≤ 256 MiB", met: (c) => c <= 256 * MiB });
    }
  }
  return rows;
}

export interface ReportInput {
  opts: Options;
  /** The command line after `npm run bench --`. */
  argv: readonly string[];
  date: Date;
  machine: Machine;
  tools: readonly Tool[];
  corpus: Corpus;
  changedFiles: number;
  /** The ceiling measured before the rounds (null without a big file). */
  firstCeiling: Ceiling | null;
  rounds: RoundsResult;
  /** The remote stores that ran (none without s3 or sftp in --stores). */
  remote: readonly RemoteRun[];
  cache: { warm: boolean; reason: string };
  /** Whether /usr/bin/time measured peak RSS and CPU time. */
  timed: boolean;
}

export interface Report {
  markdown: string;
  json: unknown;
}

export function buildReport(input: ReportInput): Report {
  const { opts, tools, rounds, machine } = input;
  const { stats } = input.corpus;
  const coffer = tools.find((t) => t.name === "coffer");
  const ceilings = [...(input.firstCeiling ? [input.firstCeiling] : []), ...rounds.roundCeiling.values()];
  const cofferEncryption = rounds.settings.coffer ?? "defaults";
  const resticRepoVersion = rounds.settings.restic ?? "compression auto";

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
  if (input.timed) {
    for (const p of PHASES) {
      if (p === "big" && opts.bigSize === 0) continue;
      rows.push({ label: `peak RSS, ${PHASE_LABEL[p]} (MiB)`, better: "lower", values: per((t) => med(t, p, (m) => m.rss)), fmt: mib, goal: "≤ 256 MiB", met: rssGoal });
    }
    rows.push({ label: "CPU time (user+sys), first backup (s)", better: "lower", values: per((t) => med(t, "first", (m) => m.cpu)), fmt: secs, goal: "", met: null });
  }
  const ceiling = highestCeiling(ceilings);
  const shares = coffer ? ceilingShares(coffer.measures.big, rounds.roundCeiling, opts.bigSize) : [];
  const cofferShare = coffer ? median(shares.map((r) => r.share)) : null;
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

  const catMed = median(rounds.catFloor.map((m) => m.wall));
  const shown = tools.map((t) => t.name);
  const md: string[] = [];
  md.push(`# coffer benchmark${opts.quick ? " (quick smoke run: figures not meaningful)" : ""}`);
  md.push("");
  md.push(`${input.date.toISOString()} · ${opts.rounds} round${opts.rounds > 1 ? "s" : ""} (medians) · \`npm run bench -- ${input.argv.join(" ")}\``);
  md.push("");
  md.push(`- **Machine**: ${machine.nproc} CPUs (${machine.cpu}), ${(machine.memoryBytes / GiB).toFixed(1)} GiB RAM, ${machine.kernel}, work directory on ${machine.fs} (${machine.device})`);
  md.push(`- **Tools**: ${tools.map((t) => (t.available ? t.version : `${t.name}: missing (${t.note})`)).join("; ")}`);
  md.push(`- **Corpus**: ${input.corpus.source}: ${stats.files} files, ${stats.dirs} directories, ${stats.symlinks} symlinks, ${stats.others} other entries, ${stats.hardlinks} extra hard links, ${stats.bytes} bytes (${fmtMiB(stats.bytes)} MiB)`);
  md.push(`- **Change phase**: ${input.changedFiles} files (${opts.changePercent}%, seeded choice), 32 bytes overwritten at a seeded offset and 32 appended, in place; reverted after the round`);
  md.push(`- **Settings**: all repositories encrypted, each tool with a fresh repository per round on the same disk; every tool with the defaults a user gets: coffer \`create\` with no KDF flags (${cofferEncryption}); restic \`init\` defaults (${resticRepoVersion}); borg \`init --encryption repokey-blake2\` (borg has no default mode; this is one of the two its docs suggest) and \`create\` defaults (lz4 compression). Each tool has its own HOME in the work directory, so its cache starts empty; the cache is not part of the repository size (see the client cache row).`);
  md.push(`- **Cache**: ${input.cache.warm ? `**warm cache** (${input.cache.reason})` : "page cache dropped (`sync; echo 3 > /proc/sys/vm/drop_caches`) before each timed run, then the tool's own program warmed with its version/help command"}. Times are wall-clock seconds of the whole command; peak RSS from \`/usr/bin/time -f %M\`. Other load on the machine makes the figures indicative.`);
  const local = opts.stores.includes("local");
  if (local) {
    md.push("");
    md.push(
      ...markdownTable(
        ["phase", ...shown, "best peer", "coffer / best", "goal (issue 5)"],
        ["left", ...shown.map(() => "right" as const), "right", "right", "left"],
        rows.map((r, i) => formatRow(r, out[i]!, shown, opts.quick)),
      ),
    );
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
        const c = coffer ? bigMiBs(coffer) : null;
        if (shares.length > 0 && cofferShare !== null && c !== null) {
          md.push(
            `- coffer against its round's ceiling: ${shares.map((r) => `r${r.round} ${r.miBs.toFixed(0)} / ${r.ceiling.toFixed(0)} = ${(100 * r.share).toFixed(0)}%`).join(", ")}; median ${(100 * cofferShare).toFixed(0)}% (its median throughput is ${((100 * c) / ceiling.allMiBs).toFixed(0)}% of the highest ceiling)`,
          );
        }
      }
    }
  }
  const remoteShown = shown.filter(hasRemoteBackends);
  const remote = input.remote.flatMap((r) => remoteRows(r.store, opts.bigSize, (p, f) => per((t) => med(t, p, f)), input.timed));
  const remoteOut = remote.map(evalRow);
  if (input.remote.length > 0) {
    const total = input.remote.reduce((sum, r) => sum + r.seconds, 0);
    md.push("");
    md.push("## Remote stores (issue 18)");
    md.push("");
    for (const r of input.remote) md.push(`- **${STORE_LABEL[r.store]}**: ${r.description}`);
    md.push(`- **Phases**: per round, each tool with a backend for the store gets a fresh repository there and an empty HOME: first backup, no-change backup and restore of the corpus, then the big file's backup and restore into a repository of its own; each repository is removed after its phases. Every tool with its defaults (coffer's \`connections\`: 8 on S3, 3 on SFTP). borg is left out: it has no S3 or SFTP backend (its remote repositories need borg on the server). Restores are checked as above; the cache is dropped before each timed run as above (the memstore OSD keeps its objects in memory).`);
    md.push(`- **Time**: the remote part took ${fmtSecs(total)} s (${input.remote.map((r) => `${STORE_LABEL[r.store]} ${fmtSecs(r.seconds)} s, of which ${fmtSecs(r.startSeconds)} s to start its server`).join("; ")}).`);
    md.push("");
    md.push(
      ...markdownTable(
        ["phase", ...remoteShown, "best peer", "coffer / best", "goal (issue 18)"],
        ["left", ...remoteShown.map(() => "right" as const), "right", "right", "left"],
        remote.map((r, i) => formatRow(r, remoteOut[i]!, remoteShown, opts.quick)),
      ),
    );
  }
  md.push("");
  md.push("Restore checks: " + (rounds.restoreChecks.length === 0 ? "none ran" : rounds.restoreChecks.map((c) => `${c.tool}${c.what === "restore" ? "" : ` ${c.what}`} r${c.round} ${c.ok ? "identical" : "DIFFERS"}`).join(", ")) + ".");
  if (rounds.failures.length > 0) {
    md.push("");
    md.push("## Failures");
    for (const f of rounds.failures) md.push(`- ${f.replace(/\n/g, "\n  ")}`);
  }
  md.push("");

  const json = {
    date: input.date.toISOString(),
    command: `npm run bench -- ${input.argv.join(" ")}`.trim(),
    quick: opts.quick,
    rounds: opts.rounds,
    machine,
    cache: input.cache.warm ? { warm: true, reason: input.cache.reason } : { warm: false, reason: "dropped before each timed run" },
    tools: Object.fromEntries(tools.map((t) => [t.name, { available: t.available, version: t.version, note: t.note, failed: t.failed }])),
    corpus: { source: input.corpus.source, seed: opts.corpusDir === null ? opts.seed : null, ...stats, changedFiles: input.changedFiles, changePercent: opts.changePercent },
    bigFile: opts.bigSize > 0 ? { bytes: opts.bigSize, catSeconds: rounds.catFloor.map((m) => m.wall), ceiling, ceilings, cofferShares: shares } : null,
    table: local ? out : [],
    remote: input.remote,
    remoteTable: remoteOut,
    raw: Object.fromEntries(tools.map((t) => [t.name, { measures: t.measures, repoSizeBytes: t.repoSize, clientCacheBytes: t.cacheSize }])),
    restoreChecks: rounds.restoreChecks,
    failures: rounds.failures,
    units: { seconds: "wall-clock seconds", sizes: "bytes in raw, MiB in table labels", rss: "bytes in raw", throughput: "MiB/s" },
  };
  return { markdown: md.join("\n"), json };
}

/** The result files' names without .md/.json: "quick" for a smoke run (never replacing the real table), else "latest" and a timestamped copy. */
export function resultFileNames(quick: boolean, date: Date): string[] {
  return quick ? ["quick"] : ["latest", date.toISOString().replace(/\.\d+Z$/, "Z").replace(/:/g, "-")];
}

/** Writes the report as NAME.md and NAME.json into `outDir`; returns the paths written (relative to the working directory). */
export function writeReport(outDir: string, quick: boolean, date: Date, report: Report): string[] {
  fs.mkdirSync(outDir, { recursive: true });
  const jsonText = `${JSON.stringify(report.json, null, 2)}\n`;
  const written: string[] = [];
  for (const name of resultFileNames(quick, date)) {
    for (const [file, body] of [[`${name}.md`, report.markdown], [`${name}.json`, jsonText]] as const) {
      const p = path.join(outDir, file);
      fs.writeFileSync(p, body);
      written.push(path.relative(process.cwd(), p) || p);
    }
  }
  return written;
}
