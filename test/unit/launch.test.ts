/**
 * The launcher's re-execution settings (src/cli/launch.ts): the malloc
 * threshold is added to the environment without dropping the user's other
 * glibc tunables, and a threshold the user chose is kept.
 */
import { describe, expect, it } from "vitest";
import { launchEnv, MMAP_THRESHOLD, V8_FLAGS } from "../../src/cli/launch.js";

describe("launchEnv", () => {
  it("adds the mmap threshold, after the user's other tunables, and keeps the rest of the environment", () => {
    expect(launchEnv({ A: "1" })).toEqual({ A: "1", GLIBC_TUNABLES: MMAP_THRESHOLD });
    expect(launchEnv({ GLIBC_TUNABLES: "glibc.malloc.arena_max=2" }).GLIBC_TUNABLES).toBe(`glibc.malloc.arena_max=2:${MMAP_THRESHOLD}`);
  });

  it("keeps a threshold the user set, and does not change the caller's object", () => {
    const env = { GLIBC_TUNABLES: "glibc.malloc.mmap_threshold=4096" };
    expect(launchEnv(env)).toEqual({ GLIBC_TUNABLES: "glibc.malloc.mmap_threshold=4096" });
    const plain = { B: "2" };
    launchEnv(plain);
    expect(plain).toEqual({ B: "2" });
  });

  it("starts with the flag the launcher checks to know it re-executed", () => {
    expect(V8_FLAGS[0]).toBe("--max-semi-space-size=4");
  });
});
