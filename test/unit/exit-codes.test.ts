/**
 * The exit codes (src/cli/exit-codes.ts): every code the program can end
 * with is in the documented table, `--help` is made from it, docs/CLI.md
 * lists exactly that table, docs/ARCHITECTURE.md names for each exit code
 * the error codes mapped to it, and the commands return named codes.
 */
import { readdirSync, readFileSync } from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { EXIT_CODES, EXIT_OF_ERROR, ExitCode, exitCodeOf, exitCodesHelp, exitCodesMarkdown } from "../../src/cli/exit-codes.js";
import { EXIT_HELP } from "../../src/cli/program.js";
import { PROJECT_ROOT } from "../helpers/cli.js";

const documented = EXIT_CODES.map((d) => d.code);

/** The table rows (`| a | b |` lines, header and rule included) of the section under `heading`. */
function tableUnder(file: string, heading: string): string[] {
  const text = readFileSync(path.join(PROJECT_ROOT, file), "utf8");
  const at = text.indexOf(`\n${heading}\n`);
  expect(at, `${file} has a section ${heading}`).toBeGreaterThanOrEqual(0);
  const rest = text.slice(at + heading.length + 2);
  const end = rest.search(/\n#+ /);
  return (end < 0 ? rest : rest.slice(0, end)).split("\n").filter((l) => l.startsWith("|"));
}

describe("the table of exit codes", () => {
  it("has every named code once, in ascending order", () => {
    expect(documented).toEqual([...new Set(Object.values(ExitCode))].sort((a, b) => a - b));
  });

  it("has the code of every error a command can fail with", () => {
    for (const [code, exit] of Object.entries(EXIT_OF_ERROR)) expect(documented, `${code} -> ${exit}`).toContain(exit);
    expect(exitCodeOf("LOCKED")).toBe(ExitCode.LOCKED);
    expect(exitCodeOf("SNAPSHOT_AMBIGUOUS")).toBe(ExitCode.USAGE);
    expect(exitCodeOf("CORRUPT")).toBe(ExitCode.ERROR);
  });

  it("is what --help ends with, one line a code", () => {
    expect(EXIT_HELP).toContain(`\n${exitCodesHelp()}\n`);
    const lines = exitCodesHelp().split("\n");
    expect(lines[0]).toBe("Exit codes:");
    expect(lines.slice(1)).toEqual(EXIT_CODES.map((d) => expect.stringMatching(new RegExp(`^  ${d.code} +${d.summary.replace(/[()]/g, "\\$&")}$`))));
  });

  it("is exactly docs/CLI.md's table", () => {
    expect(tableUnder("docs/CLI.md", "## Exit codes").join("\n")).toBe(exitCodesMarkdown());
  });

  it("docs/ARCHITECTURE.md names, for each exit code, exactly the error codes mapped to it", () => {
    const rows = tableUnder("docs/ARCHITECTURE.md", "## Errors and exit codes").slice(2);
    const errorCodes = new Set(Object.keys(EXIT_OF_ERROR));
    const named = new Map<number, string[]>();
    for (const row of rows) {
      const [, exit, causes] = row.split("|").map((c) => c.trim());
      named.set(Number(exit), (causes!.match(/\b[A-Z][A-Z_]+\b/g) ?? []).filter((w) => errorCodes.has(w)).sort());
    }
    expect([...named.keys()]).toEqual(documented);
    for (const code of documented) {
      const mapped = Object.entries(EXIT_OF_ERROR)
        .filter(([, exit]) => exit === code)
        .map(([error]) => error)
        .sort();
      expect(named.get(code), `exit ${code}`).toEqual(mapped);
    }
  });
});

/** Every .ts file under src/cli, with its text. */
function cliSources(): [string, string][] {
  const root = path.join(PROJECT_ROOT, "src", "cli");
  const out: [string, string][] = [];
  const walk = (dir: string) => {
    for (const d of readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, d.name);
      if (d.isDirectory()) walk(p);
      else if (d.name.endsWith(".ts")) out.push([path.relative(PROJECT_ROOT, p), readFileSync(p, "utf8")]);
    }
  };
  walk(root);
  return out;
}

describe("the CLI's sources", () => {
  it("return named exit codes, never numbers", () => {
    const numeric = [/\breturn \d+;/, /\breturn [^;\n]*\? \d+ : \d+/, /exitCode: \d/, /\bdone\(\d/, /\b0 \| 3\b/, /Promise<number>/, /\(code: number\) => void/];
    // Where exit codes are made: the commands, the run and the process around it.
    const coding = cliSources().filter(([file]) => /^src\/cli\/(commands\/|run\.ts|main\.ts|program\.ts)/.test(file.split(path.sep).join("/")));
    expect(coding.length).toBeGreaterThan(10);
    const found = coding.flatMap(([file, text]) => numeric.flatMap((re) => (re.test(text) ? [`${file}: ${text.match(re)![0]}`] : [])));
    expect(found).toEqual([]);
  });

  it("take streams, environment and directory from the run, the process's only in main.ts", () => {
    const processIo = /\bprocess\.(env|stdout|stderr|stdin|exit|exitCode|cwd|chdir|on|once)\b/;
    const offenders = cliSources().filter(([file, text]) => file !== path.join("src", "cli", "main.ts") && processIo.test(text));
    expect(offenders.map(([file, text]) => `${file}: ${text.match(processIo)![0]}`)).toEqual([]);
  });
});
