/** test/helpers/prerequisites.ts: a missing prerequisite skips a test, except in CI, where it fails it. */
import { afterEach, describe, expect, it } from "vitest";
import { inCi, lacks } from "../helpers/prerequisites.js";

const saved = process.env.CI;
afterEach(() => {
  if (saved === undefined) delete process.env.CI;
  else process.env.CI = saved;
});

describe("prerequisites", () => {
  it("outside CI, only a missing prerequisite skips", () => {
    delete process.env.CI;
    expect(inCi()).toBe(false);
    expect(lacks(true, "root")).toBe(false);
    expect(lacks(false, "root")).toBe(true);
  });

  it("in CI, a missing prerequisite is an error naming it", () => {
    for (const v of ["1", "true"]) {
      process.env.CI = v;
      expect(inCi()).toBe(true);
      expect(lacks(true, "root")).toBe(false);
      expect(() => lacks(false, "setpriv (util-linux)")).toThrow(/setpriv \(util-linux\): required in CI/);
    }
    process.env.CI = "false";
    expect(lacks(false, "root")).toBe(true);
  });
});
