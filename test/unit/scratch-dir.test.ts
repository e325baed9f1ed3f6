/**
 * The scratch directory of a CLI run comes from the run's environment, read
 * as os.tmpdir() reads the process's: for each environment, scratchDir
 * gives what os.tmpdir() gives with that environment as the process's.
 */
import { tmpdir } from "node:os";
import { describe, expect, it } from "vitest";
import { scratchDir } from "../../src/cli/context.js";

const VARS = ["TMPDIR", "TMP", "TEMP"] as const;

/** os.tmpdir() with `env`'s TMPDIR, TMP and TEMP as the process's. */
function nodeTmpdir(env: Record<string, string>): string {
  const saved = VARS.map((k) => [k, process.env[k]] as const);
  try {
    for (const k of VARS) {
      if (env[k] === undefined) delete process.env[k];
      else process.env[k] = env[k];
    }
    return tmpdir();
  } finally {
    for (const [k, v] of saved) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

describe("scratchDir", () => {
  it.each([
    [{ TMPDIR: "/run/scratch" }, "/run/scratch"],
    [{ TMPDIR: "/run/scratch/" }, "/run/scratch"],
    [{ TMPDIR: "/" }, "/"],
    [{ TMPDIR: "", TMP: "/from/tmp" }, "/from/tmp"],
    [{ TEMP: "/from/temp" }, "/from/temp"],
    [{ TMPDIR: "/first", TMP: "/second", TEMP: "/third" }, "/first"],
  ])("%j gives %s, as os.tmpdir() does", (env, want) => {
    expect(scratchDir(env)).toBe(want);
    expect(nodeTmpdir(env)).toBe(want);
  });

  it("without any of them: os.tmpdir()", () => {
    expect(scratchDir({ HOME: "/home/x" })).toBe(tmpdir());
  });
});
