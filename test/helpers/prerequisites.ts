/**
 * Tests that need root, a tool or a mount: outside CI a missing
 * prerequisite skips them, naming it; in CI ($CI set, as .ci/run sets it)
 * it fails them, so that a CI run never passes by skipping what it did not
 * install (.ci/run installs each tool the tests use).
 */
import type { TestContext } from "vitest";

export function inCi(): boolean {
  const ci = process.env.CI;
  return ci !== undefined && ci !== "" && ci !== "0" && ci !== "false";
}

function required(what: string): Error {
  return new Error(`${what}: required in CI ($CI is set), where no test is skipped`);
}

/** For describe.skipIf: whether to skip for lack of `what` (`ok` false); in CI a lack of it fails the file instead. */
export function lacks(ok: boolean, what: string): boolean {
  if (ok) return false;
  if (inCi()) throw required(what);
  return true;
}

/** In a test: skips it, saying `why`, or in CI fails it. */
export function skipOrFail(t: TestContext, why: string): never {
  if (inCi()) throw required(why);
  return t.skip(why);
}
