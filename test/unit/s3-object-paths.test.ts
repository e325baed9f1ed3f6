/** Object keys and snapshot pathnames (src/connectors/s3/object-paths.ts): pure, no server. */
import { describe, expect, it } from "vitest";
import { keyPath, pathKey } from "../../src/connectors/s3/object-paths.js";

describe("S3 object keys as pathnames", () => {
  it("a key is a file, a key ending in / a directory, the empty key the root", () => {
    expect(keyPath("a/b/c.txt")).toEqual({ parts: ["a", "b", "c.txt"], dir: false });
    expect(keyPath("a/b/")).toEqual({ parts: ["a", "b"], dir: true });
    expect(keyPath("")).toEqual({ parts: [], dir: true });
    expect(keyPath("name with spaces é/✓ #1")).toEqual({ parts: ["name with spaces é", "✓ #1"], dir: false });
  });

  it("keys that are no pathname say why", () => {
    for (const [key, why] of [
      ["a//b", "empty path component"],
      ["/a", "empty path component"],
      ["a/./b", '"." path component'],
      ["../a", '".." path component'],
      ["a\0b", "NUL"],
    ] as const) {
      const k = keyPath(key);
      expect("problem" in k && k.problem, key).toContain(why);
    }
  });

  it("a pathname's key under the prefix; unsafe pathnames are refused", () => {
    expect(pathKey("pre/", "/a/b")).toEqual({ rel: "a/b", key: "pre/a/b" });
    expect(pathKey("", "/a")).toEqual({ rel: "a", key: "a" });
    expect(pathKey("pre/", "/")).toEqual({ rel: "", key: "pre/" });
    for (const bad of ["a", "/../evil", "/inside/../../evil2", "/a//b", "/a/", "/a\0b"]) expect(pathKey("pre/", bad), bad).toHaveProperty("problem");
  });
});
