/**
 * The bench's report (bench/report.ts): medians over the rounds, each row's
 * best peer and coffer's ratio to it against the row's goal, the Markdown
 * table, and the result files a run writes (quick.* never replaces latest.*).
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { Ceiling } from "../../bench/ceiling.ts";
import type { Options } from "../../bench/options.ts";
import { buildReport, ceilingShares, evalRow, formatRow, markdownTable, median, resultFileNames, writeReport } from "../../bench/report.ts";
import type { ReportInput, Row } from "../../bench/report.ts";
import { newTool } from "../../bench/tools.ts";
import type { Measure, Phase, Tool, ToolName } from "../../bench/tools.ts";
import { GiB, MiB } from "../../bench/units.ts";

const secs = (n: number): string => n.toFixed(2);

function row(values: Row["values"], better: Row["better"] = "lower", met: Row["met"] = null): Row {
  return { label: "a row", better, values, fmt: secs, goal: met ? "≤ 1.00x" : "", met };
}

describe("median", () => {
  it("takes the middle of an odd count and the mean of the middle two of an even one, in any order", () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(median([7])).toBe(7);
  });

  it("ignores values that are not finite, and is null when none is left", () => {
    expect(median([NaN, 5, Infinity, 1])).toBe(3);
    expect(median([])).toBeNull();
    expect(median([NaN])).toBeNull();
  });

  it("leaves its input as it was", () => {
    const xs = [3, 1, 2];
    median(xs);
    expect(xs).toEqual([3, 1, 2]);
  });
});

describe("markdownTable", () => {
  it("writes the header, the alignment row and one line per row", () => {
    expect(
      markdownTable(
        ["store", "put", "get"],
        ["left", "right", "right"],
        [
          ["fs", "1", "2"],
          ["plugin", "3", ""],
        ],
      ),
    ).toEqual(["| store | put | get |", "|---|---:|---:|", "| fs | 1 | 2 |", "| plugin | 3 |  |"]);
  });
});

describe("evalRow", () => {
  it("compares coffer with the lower peer when lower is better", () => {
    const o = evalRow(row({ coffer: 3, restic: 4, borg: 2 }));
    expect(o.bestPeer).toEqual({ tool: "borg", value: 2 });
    expect(o.ratio).toBe(1.5);
    expect(o.met).toBeNull();
  });

  it("compares coffer with the higher peer when higher is better", () => {
    const o = evalRow(row({ coffer: 300, restic: 200, borg: 100 }, "higher"));
    expect(o.bestPeer).toEqual({ tool: "restic", value: 200 });
    expect(o.ratio).toBe(1.5);
  });

  it("judges the goal with coffer's value and ratio", () => {
    const goal = (_c: number, ratio: number | null): boolean => ratio !== null && ratio <= 1;
    expect(evalRow(row({ coffer: 1, restic: 2 }, "lower", goal)).met).toBe(true);
    expect(evalRow(row({ coffer: 3, restic: 2 }, "lower", goal)).met).toBe(false);
    expect(evalRow(row({ coffer: null, restic: 2 }, "lower", goal)).met).toBeNull();
  });

  it("has no best peer or ratio without peers, and no ratio against a zero", () => {
    const alone = evalRow(row({ coffer: 1, restic: null }));
    expect([alone.bestPeer, alone.ratio]).toEqual([null, null]);
    const zero = evalRow(row({ coffer: 1, restic: 0 }));
    expect(zero.bestPeer).toEqual({ tool: "restic", value: 0 });
    expect(zero.ratio).toBeNull();
  });
});

describe("formatRow", () => {
  const shown: ToolName[] = ["coffer", "restic", "borg"];
  const goal = (_c: number, ratio: number | null): boolean => ratio !== null && ratio <= 1;

  it("formats each tool's value, a dash for none, the best peer, the ratio and the judged goal", () => {
    const r = row({ coffer: 1, restic: 2 }, "lower", goal);
    expect(formatRow(r, evalRow(r), shown, false)).toEqual(["a row", "1.00", "2.00", "—", "2.00 (restic)", "0.50x", "≤ 1.00x ✓"]);
    const worse = row({ coffer: 3, restic: 2 }, "lower", goal);
    expect(formatRow(worse, evalRow(worse), shown, false).at(-1)).toBe("≤ 1.00x ✗");
  });

  it("quotes the goal without judging it in a quick run", () => {
    const r = row({ coffer: 3, restic: 2 }, "lower", goal);
    expect(formatRow(r, evalRow(r), shown, true).at(-1)).toBe("≤ 1.00x");
  });

  it("leaves dashes where nothing was measured", () => {
    const r = row({});
    expect(formatRow(r, evalRow(r), shown, false)).toEqual(["a row", "—", "—", "—", "—", "—", ""]);
  });
});

const ceiling = (allMiBs: number): Ceiling => ({ sampleBytes: 64 * MiB, compressedBytes: 32 * MiB, threads: 2, singleMiBs: allMiBs / 2, allMiBs });
const measure = (round: number, wall: number, rss: number | null = null): Measure => ({ round, wall, rss, cpu: rss === null ? null : 1, code: 0 });

describe("ceilingShares", () => {
  it("divides each round's throughput by that round's ceiling, leaving out rounds without one", () => {
    const shares = ceilingShares([measure(1, 2), measure(2, 4), measure(3, 1)], new Map([[1, ceiling(100)], [2, ceiling(50)]]), 100 * MiB);
    expect(shares).toEqual([
      { round: 1, miBs: 50, ceiling: 100, share: 0.5 },
      { round: 2, miBs: 25, ceiling: 50, share: 0.5 },
    ]);
  });
});

describe("resultFileNames", () => {
  const date = new Date("2026-12-07T05:48:30.106Z");

  it("names a quick run's files quick.*, so a smoke run never replaces the real table", () => {
    expect(resultFileNames(true, date)).toEqual(["quick"]);
  });

  it("names a full run's files latest.* and a timestamp without colons or milliseconds", () => {
    expect(resultFileNames(false, date)).toEqual(["latest", "2026-12-07T05-48-30Z"]);
  });
});

function tool(name: ToolName, walls: Partial<Record<Phase, number[]>>, rss: number): Tool {
  const t = newTool(name, `/nonexistent/home-${name}`);
  t.available = true;
  t.version = `${name} 1.0`;
  for (const [phase, ws] of Object.entries(walls) as [Phase, number[]][]) t.measures[phase] = ws.map((w, i) => measure(i + 1, w, rss));
  t.repoSize = [10 * MiB, 12 * MiB, 11 * MiB];
  t.cacheSize = [MiB, MiB, MiB];
  return t;
}

function input(quick: boolean, failures: string[] = []): ReportInput {
  const opts: Options = {
    quick,
    rounds: 3,
    corpusDir: null,
    corpusSize: 20 * MiB,
    bigSize: 100 * MiB,
    seed: "s",
    tools: ["coffer", "restic", "borg"],
    stores: ["local"],
    install: false,
    outDir: "/nonexistent",
    tmpBase: "/tmp",
    keep: false,
    changePercent: 1,
    dropCaches: true,
  };
  const missing = newTool("borg", "/nonexistent/home-borg");
  missing.note = "not installed (--no-install)";
  return {
    opts,
    argv: ["--rounds", "3"],
    date: new Date("2026-12-07T05:48:30.106Z"),
    machine: { nproc: 2, memoryBytes: 4 * GiB, cpu: "a CPU", kernel: "Linux 6", fs: "ext4", device: "/dev/vda", host: "h" },
    tools: [
      tool("coffer", { first: [1, 3, 2], nochange: [1, 1, 1], change: [1, 1, 1], restore: [2, 2, 2], big: [2, 1, 4] }, 200 * MiB),
      tool("restic", { first: [4, 4, 4], nochange: [2, 2, 2], change: [2, 2, 2], restore: [1, 1, 1], big: [2, 2, 2] }, 300 * MiB),
      missing,
    ],
    corpus: { dir: "/nonexistent/corpus", source: "generated", stats: { files: 10, dirs: 2, symlinks: 1, others: 0, hardlinks: 1, bytes: 20 * MiB } },
    changedFiles: 1,
    firstCeiling: ceiling(80),
    rounds: {
      catFloor: [measure(1, 0.5), measure(2, 0.5), measure(3, 0.5)],
      roundCeiling: new Map([
        [1, ceiling(100)],
        [2, ceiling(200)],
        [3, ceiling(100)],
      ]),
      restoreChecks: [
        { round: 1, tool: "coffer", what: "restore", ok: true, detail: "identical" },
        { round: 1, tool: "restic", what: "restore", ok: false, detail: "Only in a: b" },
      ],
      failures,
      settings: { coffer: "aes-256-gcm, argon2id" },
    },
    remote: [],
    cache: { warm: false, reason: "" },
    timed: true,
  };
}

describe("buildReport", () => {
  it("tabulates the medians of every phase against the best peer, with each goal judged", () => {
    const lines = buildReport(input(false)).markdown.split("\n");
    const table = lines.filter((l) => l.startsWith("|"));
    expect(table[0]).toBe("| phase | coffer | restic | borg | best peer | coffer / best | goal (issue 5) |");
    expect(table[1]).toBe("|---|---:|---:|---:|---:|---:|---|");
    expect(table).toContain("| first backup (s) | 2.00 | 4.00 | — | 4.00 (restic) | 0.50x | ≤ 1.00x ✓ |");
    expect(table).toContain("| restore (s) | 2.00 | 1.00 | — | 1.00 (restic) | 2.00x | ≤ 1.00x ✗ |");
    expect(table).toContain("| 1% change backup (s) | 1.00 | 2.00 | — | 2.00 (restic) | 0.50x |  |");
    expect(table).toContain("| repository size after first backup (MiB) | 11.0 | 11.0 | — | 11.0 (restic) | 1.00x | ≤ 1.05x ✓ |");
    expect(table).toContain("| peak RSS, big file backup (MiB) | 200 | 300 | — | 300 (restic) | 0.67x | ≤ 256 MiB ✓ |");
    // coffer's big file: 100 MiB in 2 s (median of 2, 1, 4) = 50 MiB/s; per round 50/100, 100/200, 25/100
    expect(table).toContain("| big file backup throughput (MiB/s) | 50 | 50 | — | 50 (restic) | 1.00x | ≥ 60% of the round's ceiling (median 50%) ✗ |");
    expect(table).toHaveLength(2 + 6 + 5 + 1 + 2);
  });

  it("describes the run, the missing tool, the big file's floor and ceilings, and the restore checks", () => {
    const md = buildReport(input(false)).markdown;
    expect(md).toContain("2026-12-07T05:48:30.106Z · 3 rounds (medians) · `npm run bench -- --rounds 3`");
    expect(md).toContain("- **Tools**: coffer 1.0; restic 1.0; borg: missing (not installed (--no-install))");
    expect(md).toContain("coffer `create` with no KDF flags (aes-256-gcm, argon2id); restic `init` defaults (compression auto)");
    expect(md).toContain("- floor: `cat FILE > /dev/null` 0.50 s = 200 MiB/s");
    expect(md).toContain("before the big file's backups: 80, 100, 200, 100 MiB/s (the highest on 1 thread: 100 MiB/s)");
    expect(md).toContain("- coffer against its round's ceiling: r1 50 / 100 = 50%, r2 100 / 200 = 50%, r3 25 / 100 = 25%; median 50% (its median throughput is 25% of the highest ceiling)");
    expect(md).toContain("Restore checks: coffer r1 identical, restic r1 DIFFERS.");
    expect(md).not.toContain("## Failures");
    expect(md.endsWith("\n")).toBe(true);
  });

  it("lists the failures, and leaves the goals unjudged in a quick run", () => {
    const md = buildReport(input(true, ["restic: restore (round 1) differs from the corpus:\nOnly in a: b"])).markdown;
    expect(md).toContain("# coffer benchmark (quick smoke run: figures not meaningful)");
    expect(md).toContain("## Failures\n- restic: restore (round 1) differs from the corpus:\n  Only in a: b");
    expect(md).not.toMatch(/[✓✗]/);
  });

  it("gives the same figures in the JSON, with every raw measurement", () => {
    const json = buildReport(input(false)).json as Record<string, unknown>;
    expect(Object.keys(json)).toEqual(["date", "command", "quick", "rounds", "machine", "cache", "tools", "corpus", "bigFile", "table", "remote", "remoteTable", "raw", "restoreChecks", "failures", "units"]);
    expect(json["command"]).toBe("npm run bench -- --rounds 3");
    const big = json["bigFile"] as { ceiling: Ceiling; ceilings: Ceiling[]; cofferShares: unknown[] };
    expect(big.ceiling.allMiBs).toBe(200);
    expect(big.ceilings.map((c) => c.allMiBs)).toEqual([80, 100, 200, 100]);
    expect(big.cofferShares).toHaveLength(3);
    const table = json["table"] as { label: string; ratio: number | null; met: boolean | null }[];
    expect(table.find((r) => r.label === "first backup (s)")).toMatchObject({ ratio: 0.5, met: true });
    const raw = json["raw"] as Record<string, { measures: Record<Phase, Measure[]> }>;
    expect(raw["coffer"]!.measures.first.map((m) => m.wall)).toEqual([1, 3, 2]);
  });

  it("leaves out the RSS and CPU rows without /usr/bin/time and the big file's rows without a big file", () => {
    const i = input(false);
    i.timed = false;
    i.opts.bigSize = 0;
    const md = buildReport(i).markdown;
    expect(md).not.toContain("peak RSS,");
    expect(md).not.toContain("CPU time");
    expect(md).not.toContain("big file");
    expect(md.split("\n").filter((l) => l.startsWith("|"))).toHaveLength(2 + 6);
  });
});

describe("buildReport with remote stores", () => {
  const remoteInput = (): ReportInput => {
    const i = input(false);
    i.opts.stores = ["s3", "sftp"];
    const [coffer, restic] = i.tools;
    // coffer: first 3 s, no-change 1 s, restore 8 s, the big file (100 MiB) backed up in 4 s and restored in 5 s (20 MiB/s)
    for (const [t, walls] of [
      [coffer!, [3, 1, 8, 4, 5]],
      [restic!, [2, 2, 4, 4, 2]],
    ] as const) {
      for (const store of ["s3", "sftp"] as const) {
        (["first", "nochange", "restore", "bigbackup", "bigrestore"] as const).forEach((p, k) => (t.measures[`${store}-${p}`] = [measure(1, walls[k]!, (t.name === "coffer" ? 260 : 100) * MiB)]));
      }
    }
    i.remote = [
      { store: "s3", description: "radosgw at http://127.0.0.1:1", startSeconds: 12, seconds: 100 },
      { store: "sftp", description: "sshd at 127.0.0.1:2", startSeconds: 0.5, seconds: 50 },
    ];
    return i;
  };

  it("has no local table without the local store, and a remote one of coffer and restic per store", () => {
    const md = buildReport(remoteInput()).markdown;
    const table = md.split("\n").filter((l) => l.startsWith("|"));
    expect(md).not.toContain("goal (issue 5)");
    expect(md).not.toContain("- floor:");
    expect(table[0]).toBe("| phase | coffer | restic | best peer | coffer / best | goal (issue 18) |");
    expect(table).toContain("| S3 first backup (s) | 3.00 | 2.00 | 2.00 (restic) | 1.50x | ≤ 1.00x ✗ |");
    expect(table).toContain("| SFTP no-change backup (s) | 1.00 | 2.00 | 2.00 (restic) | 0.50x | ≤ 1.00x ✓ |");
    expect(table).toContain("| SFTP big file (100 MiB) backup (s) | 4.00 | 4.00 | 4.00 (restic) | 1.00x |  |");
    expect(table).toContain("| S3 big file restore throughput (MiB/s) | 20 | 50 | 50 (restic) | 0.40x | ≥ 1.00x ✗ |");
    expect(table).toContain("| peak RSS, SFTP restore (MiB) | 260 | 100 | 100 (restic) | 2.60x | ≤ 256 MiB ✗ |");
    expect(table).toHaveLength(2 + 2 * (5 + 5));
    expect(md).toContain("- **S3**: radosgw at http://127.0.0.1:1");
    expect(md).toContain("the remote part took 150 s (S3 100 s, of which 12.0 s to start its server; SFTP 50.0 s, of which 0.50 s to start its server)");
  });

  it("gives the remote rows and runs in the JSON, the local table empty", () => {
    const json = buildReport(remoteInput()).json as Record<string, unknown>;
    expect(json["table"]).toEqual([]);
    expect((json["remote"] as unknown[]).length).toBe(2);
    const rows = json["remoteTable"] as { label: string; ratio: number | null; met: boolean | null }[];
    expect(rows.find((r) => r.label === "SFTP restore (s)")).toMatchObject({ ratio: 2, met: false });
  });
});

describe("writeReport", () => {
  let dir = "";
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it("writes NAME.md and NAME.json for every name, the Markdown as built and the JSON indented", () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "bench-report-"));
    const report = { markdown: "# table\n", json: { a: 1 } };
    const written = writeReport(dir, false, new Date("2026-12-07T05:48:30.106Z"), report);
    expect(written.map((p) => path.basename(p))).toEqual(["latest.md", "latest.json", "2026-12-07T05-48-30Z.md", "2026-12-07T05-48-30Z.json"]);
    expect(fs.readFileSync(path.join(dir, "latest.md"), "utf8")).toBe("# table\n");
    expect(fs.readFileSync(path.join(dir, "2026-12-07T05-48-30Z.json"), "utf8")).toBe('{\n  "a": 1\n}\n');
    expect(writeReport(dir, true, new Date(), report).map((p) => path.basename(p))).toEqual(["quick.md", "quick.json"]);
  });
});
