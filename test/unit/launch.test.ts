/**
 * The launcher's re-execution settings (src/cli/launch.ts): the malloc
 * threshold is added to the environment without dropping the user's other
 * glibc tunables, a threshold the user chose is kept, and no re-execution
 * when it would rewrite a variable that was not valid UTF-8.
 */
import { describe, expect, it } from "vitest";
import { launchEnv, MMAP_THRESHOLD, reexecKeepsEnvironment, V8_FLAGS } from "../../src/cli/launch.js";
import { Collector } from "../../src/util/gc.js";

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

describe("reexecKeepsEnvironment", () => {
  it("is false when a name or value holds U+FFFD (Node's decoding of bytes that were not UTF-8), else true", () => {
    expect(reexecKeepsEnvironment({ A: "1", COFFER_PASSPHRASE: "pässwörd ✓" })).toBe(true);
    expect(reexecKeepsEnvironment({})).toBe(true);
    expect(reexecKeepsEnvironment({ COFFER_PASSPHRASE: "caf\ufffd-secret" })).toBe(false);
    expect(reexecKeepsEnvironment({ OTHER: "\ufffd" })).toBe(false);
    expect(reexecKeepsEnvironment({ "X\ufffd": "1" })).toBe(false);
  });
});

describe("Collector (src/util/gc.ts): the collections the launcher's --expose-gc allows", () => {
  it("asks for one collection of its type each time `every` bytes are done with, and none without gc()", () => {
    const g = globalThis as { gc?: (o?: { type: string }) => void };
    const saved = g.gc;
    const calls: (string | undefined)[] = [];
    try {
      g.gc = (o) => void calls.push(o?.type);
      const c = new Collector(100, "major");
      c.after(60);
      c.after(39);
      expect(calls).toEqual([]);
      c.after(1);
      expect(calls).toEqual(["major"]);
      c.after(250); // one collection, however far past
      expect(calls).toEqual(["major", "major"]);
      c.after(99);
      expect(calls).toHaveLength(2);
      new Collector(10, "minor").after(10);
      expect(calls).toEqual(["major", "major", "minor"]);
      delete g.gc;
      expect(() => new Collector(1, "major").after(5)).not.toThrow();
    } finally {
      if (saved) g.gc = saved;
      else delete g.gc;
    }
  });
});
