/**
 * The glob patterns of `locate` (src/util/glob.ts): wildcards, classes,
 * "**", escapes, names and full paths, and names that are not UTF-8 typed
 * in the escaped form the CLI prints them in.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { compileGlob } from "../../src/util/glob.js";
import { escapeName, nameFromBytes } from "../../src/util/names.js";

const matches = (pattern: string, subject: string) => compileGlob(pattern).matches(subject);

describe("compileGlob", () => {
  it("matches a pattern without / against the name", () => {
    const g = compileGlob("*.txt");
    expect(g.fullPath).toBe(false);
    expect(g.matches("a.txt")).toBe(true);
    expect(g.matches(".txt")).toBe(true);
    expect(g.matches("a.txt.bak")).toBe(false);
    expect(g.matches("a.TXT")).toBe(false);
  });

  it("gives * any run of characters and ? one character, never a /", () => {
    expect(matches("a*c", "ac")).toBe(true);
    expect(matches("a*c", "abbbc")).toBe(true);
    expect(matches("a?c", "abc")).toBe(true);
    expect(matches("a?c", "ac")).toBe(false);
    expect(matches("a?c", "a\u{1f600}c")).toBe(true);
    expect(matches("/x/*", "/x/y")).toBe(true);
    expect(matches("/x/*", "/x/y/z")).toBe(false);
    expect(matches("/x?y", "/x/y")).toBe(false);
  });

  it("reads [...] as one of a set, with ranges, negation and a leading ]", () => {
    expect(matches("[abc]", "b")).toBe(true);
    expect(matches("[abc]", "d")).toBe(false);
    expect(matches("[a-c]x", "bx")).toBe(true);
    expect(matches("[a-c]x", "dx")).toBe(false);
    expect(matches("[!a-c]", "d")).toBe(true);
    expect(matches("[^a-c]", "a")).toBe(false);
    expect(matches("[]]", "]")).toBe(true);
    expect(matches("[a-]", "-")).toBe(true);
    expect(matches("[.]*", ".x")).toBe(true);
    expect(matches("[.]*", "ax")).toBe(false);
    // an unclosed [ is itself
    expect(matches("[ab", "[ab")).toBe(true);
  });

  it("takes the characters of a RegExp for themselves", () => {
    expect(matches("a.b", "a.b")).toBe(true);
    expect(matches("a.b", "axb")).toBe(false);
    expect(matches("(x)+$", "(x)+$")).toBe(true);
    expect(matches("{a,b}", "{a,b}")).toBe(true);
    expect(matches("{a,b}", "a")).toBe(false);
  });

  it("matches a pattern with / against the full path, at any depth unless it starts with /", () => {
    const g = compileGlob("src/*.ts");
    expect(g.fullPath).toBe(true);
    expect(g.matches("/src/a.ts")).toBe(true);
    expect(g.matches("/home/me/src/a.ts")).toBe(true);
    expect(g.matches("/home/mysrc/a.ts")).toBe(false);
    expect(g.matches("/src/lib/a.ts")).toBe(false);
    expect(matches("/src/*.ts", "/src/a.ts")).toBe(true);
    expect(matches("/src/*.ts", "/home/src/a.ts")).toBe(false);
    expect(matches("/src/", "/src")).toBe(true);
  });

  it("gives ** any number of components, one or more at the end", () => {
    expect(matches("/a/**/b", "/a/b")).toBe(true);
    expect(matches("/a/**/b", "/a/x/y/b")).toBe(true);
    expect(matches("/a/**/b", "/a/x/yb")).toBe(false);
    expect(matches("/a/**", "/a/x")).toBe(true);
    expect(matches("/a/**", "/a/x/y")).toBe(true);
    expect(matches("/a/**", "/a")).toBe(false);
    expect(matches("/a/**", "/ab")).toBe(false);
    expect(matches("**/b", "/b")).toBe(true);
    expect(matches("**/b", "/x/y/b")).toBe(true);
    expect(matches("**", "anything")).toBe(true);
  });

  it("takes \\c for the character c and \\ooo for a byte, as the CLI prints names", () => {
    expect(matches("\\*", "*")).toBe(true);
    expect(matches("\\*", "a")).toBe(false);
    expect(matches("a\\?", "a?")).toBe(true);
    expect(matches("\\[x]", "[x]")).toBe(true);
    expect(matches("back\\\\slash", "back\\slash")).toBe(true);
    const latin = nameFromBytes(Buffer.from("lat\xe9", "latin1"));
    expect(matches("lat\\351", latin)).toBe(true);
    expect(matches("lat?", latin)).toBe(true);
    expect(matches("lat\\351", "laté")).toBe(false);
    // bytes that form UTF-8 together are that character
    expect(matches("caf\\303\\251", "café")).toBe(true);
    expect(matches("new\\012line", "new\nline")).toBe(true);
  });

  it("matches every name by its own escapeName() form, and * matches every name", () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 24 }), (bytes) => {
        const name = nameFromBytes(bytes.map((b) => (b === 0x2f ? 0x2e : b)));
        const literal = escapeName(name).replace(/[*?[]/g, (c) => `\\${c}`);
        expect(matches(literal, name)).toBe(true);
        expect(matches("*", name)).toBe(true);
      }),
    );
  });
});
