/**
 * `check --read-data-subset`, `--max-duration` and `--coverage` through the
 * BUILT binary (run `npm run build` first): the options parse, a partial
 * check's report and exit code, and the coverage a check leaves, as a user
 * sees them. The behaviour in depth: test/integration/check-coverage.test.ts.
 */
import { promises as fsp } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { coffer, describeRun, EXIT, FAST_KDF, parseJson } from "../helpers/cli.js";
import { writeSeededFile } from "../helpers/tree.js";

const PASS = "coverage e2e";
let base: string;
let repo: string;
const env = () => ({ COFFER_PASSPHRASE: PASS, XDG_CACHE_HOME: path.join(base, "cache") });

async function run(args: string[], code: number = EXIT.OK) {
  const r = await coffer(["at", repo, ...args], { env: env() });
  expect(r.exitCode, describeRun(r)).toBe(code);
  return r;
}

beforeAll(async () => {
  base = await fsp.mkdtemp(path.join(tmpdir(), "coffer-coverage-e2e-"));
  repo = path.join(base, "repo");
  await fsp.mkdir(path.join(base, "src"));
  await writeSeededFile(path.join(base, "src", "a.bin"), "cov-e2e", 100_000);
  await run(["create", ...FAST_KDF]);
  await run(["backup", "-q", path.join(base, "src")]);
}, 60_000);

afterAll(async () => {
  await fsp.rm(base, { recursive: true, force: true });
});

describe("check coverage through the binary", () => {
  it("nothing verified, then a check with a time limit of 0 verifies one packfile, and --coverage says so", async () => {
    const before = parseJson<{ packs: number; never: { packs: number } }>(await run(["check", "--coverage", "--json"]));
    expect(before.never.packs).toBe(before.packs);
    const c = parseJson<{ problems: unknown[]; read: { packs: number }; verified: { packs: number; state: boolean; cache: boolean } }>(
      await run(["check", "--json", "--read-data-subset", "1/1", "--max-duration", "0"]),
    );
    expect(c).toMatchObject({ problems: [], read: { packs: 1 }, verified: { packs: 1, state: true, cache: true } });
    const after = await run(["check", "--coverage"]);
    expect(after.stdout).toMatch(/in the last day: +1 packfiles/);
  });

  it("a bad subset is a usage error", async () => {
    const r = await run(["check", "--read-data-subset", "2/1"], EXIT.USAGE);
    expect(r.stderr).toContain("--read-data-subset");
  });
});
