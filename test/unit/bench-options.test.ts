/**
 * The bench's command line (bench/options.ts): sizes with binary suffixes,
 * the defaults of a full and a quick run, both option spellings, and a
 * UsageError (printed with the help, exit 2) for anything it cannot use.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { UsageError, parseArgs, parseSize } from "../../bench/options.ts";
import type { Options } from "../../bench/options.ts";
import { GiB, KiB, MiB } from "../../bench/units.ts";

function options(argv: string[]): Options {
  const o = parseArgs(argv);
  if (o === "help") throw new Error("unexpected help");
  return o;
}

describe("parseSize", () => {
  it("takes binary K, M, G and T suffixes, any case, with an optional B or iB", () => {
    expect(parseSize("100", "x")).toBe(100);
    expect(parseSize("64k", "x")).toBe(64 * KiB);
    expect(parseSize("20M", "x")).toBe(20 * MiB);
    expect(parseSize("1.5G", "x")).toBe(1.5 * GiB);
    expect(parseSize("2GiB", "x")).toBe(2 * GiB);
    expect(parseSize(" 3 MB ", "x")).toBe(3 * MiB);
    expect(parseSize("1t", "x")).toBe(1024 * GiB);
  });

  it("refuses anything else, naming the option", () => {
    expect(() => parseSize("3X", "--big-size")).toThrow(new UsageError("bad size for --big-size: 3X"));
    expect(() => parseSize("-1M", "--big-size")).toThrow(UsageError);
    expect(() => parseSize("", "--big-size")).toThrow(UsageError);
  });
});

describe("parseArgs", () => {
  it("defaults to 3 rounds, a 300 MiB corpus and a 2 GiB big file; --quick to 1, 20 MiB and 64 MiB", () => {
    const full = options([]);
    expect([full.quick, full.rounds, full.corpusSize, full.bigSize, full.corpusDir]).toEqual([false, 3, 300 * MiB, 2 * GiB, null]);
    expect([full.seed, full.tools, full.install, full.dropCaches, full.keep, full.changePercent]).toEqual(["coffer-bench-1", ["coffer", "restic", "borg"], true, true, false, 1]);
    expect(full.outDir.endsWith(path.join("bench", "results"))).toBe(true);
    const quick = options(["--quick"]);
    expect([quick.quick, quick.rounds, quick.corpusSize, quick.bigSize]).toEqual([true, 1, 20 * MiB, 64 * MiB]);
  });

  it("lets explicit values win over --quick's, in either spelling", () => {
    const o = options(["--quick", "--rounds=2", "--big-size", "0", "--corpus-size=1M", "--seed", "s2", "--change-percent", "5"]);
    expect([o.rounds, o.bigSize, o.corpusSize, o.seed, o.changePercent]).toEqual([2, 0, MiB, "s2", 5]);
  });

  it("takes every store by default and only the local one with --quick, unless --stores says otherwise", () => {
    expect(options([]).stores).toEqual(["local", "s3", "sftp"]);
    expect(options(["--quick"]).stores).toEqual(["local"]);
    expect(options(["--quick", "--stores", "sftp, local,s3"]).stores).toEqual(["local", "s3", "sftp"]);
    expect(options(["--stores=s3"]).stores).toEqual(["s3"]);
  });

  it("keeps the tools in their own order, whatever order they are given in", () => {
    expect(options(["--tools", "borg, coffer"]).tools).toEqual(["coffer", "borg"]);
  });

  it("resolves the corpus, --tmp and --out directories and sets the switches", () => {
    const here = fs.mkdtempSync(path.join(os.tmpdir(), "bench-options-"));
    try {
      const o = options([here, "--tmp", "rel-tmp", "--out=rel-out", "--no-install", "--no-drop-caches", "--keep"]);
      expect(o.corpusDir).toBe(here);
      expect([o.tmpBase, o.outDir]).toEqual([path.resolve("rel-tmp"), path.resolve("rel-out")]);
      expect([o.install, o.dropCaches, o.keep]).toEqual([false, false, true]);
    } finally {
      fs.rmSync(here, { recursive: true, force: true });
    }
  });

  it("stops at -h or --help", () => {
    expect(parseArgs(["--help", "--bogus"])).toBe("help");
    expect(parseArgs(["-h"])).toBe("help");
  });

  it("throws a UsageError for what it cannot use", () => {
    for (const [argv, message] of [
      [["--bogus"], "unknown option --bogus"],
      [["--rounds", "0"], "--rounds needs a positive integer"],
      [["--rounds", "1.5"], "--rounds needs a positive integer"],
      [["--tools", "coffer,tar"], "unknown tool tar"],
      [["--stores", "local,gcs"], "unknown store gcs"],
      [["--stores", ","], "--stores needs at least one of local,s3,sftp"],
      [["--change-percent", "0"], "--change-percent needs a number in (0, 100]"],
      [["--change-percent", "101"], "--change-percent needs a number in (0, 100]"],
      [["--seed"], "--seed needs a value"],
      [["/nonexistent/bench-corpus"], "not a directory: /nonexistent/bench-corpus"],
      [[os.tmpdir(), os.tmpdir()], "only one corpus directory"],
    ] as const) {
      expect(() => parseArgs(argv), argv.join(" ")).toThrow(new UsageError(message));
    }
  });
});
