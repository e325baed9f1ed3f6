/**
 * What the conformance kits need from a test runner, and what they share.
 *
 * A plugin author passes the kits the runner's own functions, so the kits
 * never import a test framework:
 *
 *   import { afterEach, describe, it } from "vitest";      // or "node:test"
 *   storeKit({ describe, it, afterEach }, "s3", makeFixture);
 *
 * `it` gets an optional timeout in milliseconds as its third argument
 * (vitest honours it, node:test ignores it). The importer and exporter kits
 * also bound each call they make to the connector (KitOptions.timeoutMs),
 * so a connector that hangs fails the check with a message naming the call
 * instead of stalling the run. Assertions use node:assert/strict.
 */
import { AssertionError } from "node:assert";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import type { EntryKind, Xattr } from "../../connectors/records.js";

/** The subset of vitest's and node:test's API the kits call. */
export interface Harness {
  describe(name: string, fn: () => void): unknown;
  it(name: string, fn: () => Promise<void>, timeoutMs?: number): unknown;
  /** Optional: lets a kit clean up the fixture of a test the runner gave up on (a timeout). */
  afterEach?(fn: () => Promise<void>): unknown;
}

export interface KitOptions {
  /** Longest wait for one call to the connector (one next(), one export(), close()...). Default 10 s. */
  timeoutMs?: number | undefined;
  /** Timeout passed to the harness for each test. Default 60 s. */
  testTimeoutMs?: number | undefined;
}

/**
 * An entry as the importer kit expects it from an import, and as the
 * exporter kit compares what an exporter wrote. Only the fields given are
 * compared (pathname and kind always are).
 */
export interface ExpectedEntry {
  /** Absolute within the snapshot: "/", "/dir", "/dir/file". */
  pathname: string;
  kind: EntryKind;
  /** fileInfo.size; for files read back, also the number of content bytes. */
  size?: number | undefined;
  /** A regular file's content (a string is its UTF-8 bytes). */
  content?: Uint8Array | string | undefined;
  /** Hex SHA-256 of a regular file's content, for content too large to spell out. */
  sha256?: string | undefined;
  /** Symlink target. */
  target?: string | undefined;
  /** st_mode & 0o7777. Never compared on symlinks. */
  mode?: number | undefined;
  /** Modification time in ns: exact for imports, within 1 ms for what an exporter wrote. */
  mtimeNs?: bigint | undefined;
  /**
   * Extended attributes. Only the "user." namespace is compared (security.*,
   * system.* and trusted.* depend on the machine); [] means none.
   */
  xattrs?: Xattr[] | undefined;
  /** A hard link: this entry shares its content/inode with the entry at that pathname. */
  sameAs?: string | undefined;
  /** The importer yields this entry as an error record (`error` set). */
  error?: true | undefined;
  /** The record has no error, but open() or reading its content fails (e.g. an unreadable file). */
  contentError?: true | undefined;
}

export const DEFAULT_TIMEOUT_MS = 10_000;
export const DEFAULT_TEST_TIMEOUT_MS = 60_000;

/** Resolves as `p` does, or rejects with an AssertionError naming `what` after `ms`. */
export async function within<T>(p: PromiseLike<T>, ms: number, what: string): Promise<T> {
  const promise = Promise.resolve(p);
  promise.catch(() => {}); // still observed by the race below; not unhandled if we give up on it
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new AssertionError({ message: `${what}: no answer within ${ms} ms` })), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Declares tests that each get fresh fixtures from make(); every fixture a
 * test made is cleaned up when the test ends (and, if the harness has
 * afterEach, after a test the runner abandoned).
 */
export function fixtureTests<F extends { cleanup(): Promise<void> }>(
  h: Harness,
  make: () => Promise<F>,
  testTimeoutMs: number,
): (name: string, body: (fresh: () => Promise<F>) => Promise<void>) => void {
  const live = new Set<F>();
  const cleanAll = async (): Promise<void> => {
    const all = [...live];
    live.clear();
    for (const f of all) await f.cleanup();
  };
  h.afterEach?.(cleanAll);
  return (name, body) => {
    h.it(
      name,
      async () => {
        const mine = new Set<F>();
        const fresh = async (): Promise<F> => {
          const f = await make();
          live.add(f);
          mine.add(f);
          return f;
        };
        let failed = false;
        try {
          await body(fresh);
        } catch (e) {
          failed = true;
          throw e;
        } finally {
          for (const f of mine) {
            if (!live.delete(f)) continue;
            if (failed) await f.cleanup().catch(() => {});
            else await f.cleanup();
          }
        }
      },
      testTimeoutMs,
    );
  };
}

// --- shared checks ---

const KINDS: ReadonlySet<string> = new Set<EntryKind>(["file", "dir", "symlink", "fifo", "socket", "chardev", "blockdev", "other"]);

export function isEntryKind(k: unknown): k is EntryKind {
  return typeof k === "string" && KINDS.has(k);
}

/** Why `p` is not a snapshot pathname ('/'-rooted, normalised, no '.' or '..', no NUL), or undefined. */
function pathnameProblem(p: unknown): string | undefined {
  if (typeof p !== "string") return "not a string";
  if (p === "/") return undefined;
  if (!p.startsWith("/")) return "does not start with '/'";
  if (p.endsWith("/")) return "ends with '/'";
  if (p.includes("\0")) return "contains NUL";
  for (const part of p.slice(1).split("/")) {
    if (part === "") return "has an empty component ('//')";
    if (part === "." || part === "..") return `has a '${part}' component`;
  }
  return undefined;
}

export function assertPathname(p: unknown, what: string): asserts p is string {
  const problem = pathnameProblem(p);
  if (problem !== undefined) assert.fail(`${what}: invalid pathname ${JSON.stringify(p)}: ${problem}`);
}

/** Checks a fixture's expectations: valid, unique pathnames. */
export function checkExpected(entries: readonly ExpectedEntry[], what: string): Map<string, ExpectedEntry> {
  const byPath = new Map<string, ExpectedEntry>();
  for (const e of entries) {
    assertPathname(e.pathname, `${what} (the fixture's expectations)`);
    assert.ok(isEntryKind(e.kind), `${what}: ${e.pathname}: unknown kind ${String(e.kind)}`);
    assert.ok(!byPath.has(e.pathname), `${what}: ${e.pathname} is listed twice`);
    byPath.set(e.pathname, e);
  }
  return byPath;
}

export interface Digest {
  size: number;
  sha256: string;
}

export function digestBytes(b: Uint8Array): Digest {
  return { size: b.byteLength, sha256: createHash("sha256").update(b).digest("hex") };
}

/** The digest an expectation gives for its content, if it gives one. */
export function expectedDigest(e: ExpectedEntry): Digest | { size: number | undefined; sha256: string } | undefined {
  if (e.content !== undefined) {
    return digestBytes(typeof e.content === "string" ? Buffer.from(e.content, "utf8") : e.content);
  }
  if (e.sha256 !== undefined) return { size: e.size, sha256: e.sha256.toLowerCase() };
  return undefined;
}

/** Reads an AsyncIterable of Uint8Array pieces to its digest; every piece must be a Uint8Array. */
export async function digestStream(src: AsyncIterable<unknown>, timeoutMs: number, what: string): Promise<Digest> {
  const hash = createHash("sha256");
  let size = 0;
  assert.ok(
    src !== null && typeof src === "object" && typeof (src as AsyncIterable<unknown>)[Symbol.asyncIterator] === "function",
    `${what}: open() must resolve to an AsyncIterable`,
  );
  const it = src[Symbol.asyncIterator]();
  while (true) {
    const n = await within(it.next(), timeoutMs, `${what}: reading content`);
    if (n.done === true) break;
    const piece: unknown = n.value;
    if (!(piece instanceof Uint8Array)) {
      await it.return?.();
      assert.fail(`${what}: content pieces must be Uint8Array, got ${typeof piece}`);
    }
    hash.update(piece);
    size += piece.byteLength;
  }
  return { size, sha256: hash.digest("hex") };
}

/** The "user." attributes as a sorted name -> hex value list. */
export function userXattrs(x: readonly Xattr[] | undefined): [string, string][] {
  return (x ?? [])
    .filter((a) => a.name.startsWith("user."))
    .map((a): [string, string] => [a.name, Buffer.from(a.value.buffer, a.value.byteOffset, a.value.byteLength).toString("hex")])
    .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
}

export function octal(n: number | undefined): string {
  return n === undefined ? "undefined" : `0o${n.toString(8)}`;
}

export function errorText(e: unknown): string {
  return e instanceof Error ? `${e.name}: ${e.message}` : String(e);
}

/** The error's `code`, if it is an Error with one. */
export function codeOf(e: unknown): unknown {
  return e instanceof Error ? (e as Error & { code?: unknown }).code : undefined;
}

/** Hard links as groups: each group the sorted pathnames of one inode (following sameAs chains), groups sorted. */
export function linkGroups(entries: readonly ExpectedEntry[]): string[][] {
  const parent = new Map<string, string>();
  const find = (p: string): string => {
    let r = p;
    while (parent.has(r) && parent.get(r) !== r) r = parent.get(r) as string;
    return r;
  };
  for (const e of entries) {
    if (e.sameAs === undefined) continue;
    const a = find(e.pathname);
    const b = find(e.sameAs);
    if (a !== b) parent.set(a, b);
    if (!parent.has(b)) parent.set(b, b);
  }
  const groups = new Map<string, string[]>();
  for (const p of parent.keys()) {
    const r = find(p);
    let g = groups.get(r);
    if (g === undefined) groups.set(r, (g = []));
    g.push(p);
  }
  return [...groups.values()].map((g) => g.sort()).sort((a, b) => (a.join("\0") < b.join("\0") ? -1 : 1));
}
