/**
 * Extended attributes through the `getfattr`/`setfattr` tools (Debian
 * package attr): Node has no xattr API and coffer uses no native addon.
 * Reading is one `getfattr -R` run per import, parsed incrementally into a
 * map; writing is one `setfattr --restore` run fed a dump on stdin. Paths
 * and names travel in getfattr's escaped form (\ooo octal escapes).
 */

import { spawn } from "node:child_process";
import { posix } from "node:path";
import type { Xattr } from "../records.js";
import { abortError } from "../../util/errors.js";

export interface XattrOptions {
  signal?: AbortSignal | undefined;
  onWarning?: ((msg: string) => void) | undefined;
}

const BACKSLASH = 0x5c;
const NL = 0x0a;
const isOctal = (c: number | undefined): c is number => c !== undefined && c >= 0x30 && c <= 0x37;

/** Decodes getfattr's quoting: `\ooo` is a byte, `\X` is X (text values). */
export function unescapeBytes(b: Uint8Array): Buffer {
  if (!b.includes(BACKSLASH)) return Buffer.from(b);
  const out = Buffer.alloc(b.length);
  let n = 0;
  for (let i = 0; i < b.length; i++) {
    const c = b[i] as number;
    if (c !== BACKSLASH || i + 1 >= b.length) {
      out[n++] = c;
      continue;
    }
    const [d1, d2, d3] = [b[i + 1], b[i + 2], b[i + 3]];
    if (isOctal(d1) && isOctal(d2) && isOctal(d3)) {
      out[n++] = (((d1 - 0x30) << 6) | ((d2 - 0x30) << 3) | (d3 - 0x30)) & 0xff;
      i += 3;
    } else {
      out[n++] = d1 as number;
      i += 1;
    }
  }
  return out.subarray(0, n);
}

/** Encodes a path or name for a setfattr dump: controls, space, DEL, `\` (and `=` in names) as \ooo. */
export function escapeText(s: string, isName = false): string {
  const bytes = Buffer.from(s, "utf8");
  let out = "";
  let start = 0;
  for (let i = 0; i < bytes.length; i++) {
    const c = bytes[i] as number;
    if (c <= 0x20 || c === 0x7f || c === BACKSLASH || (isName && c === 0x3d)) {
      out += bytes.subarray(start, i).toString("utf8") + "\\" + c.toString(8).padStart(3, "0");
      start = i + 1;
    }
  }
  return out + bytes.subarray(start).toString("utf8");
}

/** Decodes a value as getfattr prints it: `0s` base64, `0x` hex, or a quoted string. */
export function parseValue(text: Uint8Array): Buffer {
  const s = Buffer.from(text);
  if (s.length >= 2 && s[0] === 0x30 && (s[1] === 0x73 || s[1] === 0x53)) {
    return Buffer.from(s.subarray(2).toString("latin1"), "base64");
  }
  if (s.length >= 2 && s[0] === 0x30 && (s[1] === 0x78 || s[1] === 0x58)) {
    return Buffer.from(s.subarray(2).toString("latin1"), "hex");
  }
  if (s.length >= 2 && s[0] === 0x22 && s[s.length - 1] === 0x22) return unescapeBytes(s.subarray(1, -1));
  return unescapeBytes(s);
}

const FILE_PREFIX = Buffer.from("# file: ");

/** Incremental parser of `getfattr -d` output into absolute path -> attributes. */
export class GetfattrParser {
  readonly map = new Map<string, Xattr[]>();
  private rest: Buffer = Buffer.alloc(0);
  private current: Xattr[] | undefined;

  push(chunk: Buffer): void {
    let buf = this.rest.length > 0 ? Buffer.concat([this.rest, chunk]) : chunk;
    let nl: number;
    while ((nl = buf.indexOf(NL)) >= 0) {
      this.line(buf.subarray(0, nl));
      buf = buf.subarray(nl + 1);
    }
    this.rest = Buffer.from(buf);
  }

  end(): Map<string, Xattr[]> {
    if (this.rest.length > 0) this.line(this.rest);
    this.rest = Buffer.alloc(0);
    return this.map;
  }

  private line(line: Buffer): void {
    if (line.length === 0) {
      this.current = undefined;
      return;
    }
    if (line.subarray(0, FILE_PREFIX.length).equals(FILE_PREFIX)) {
      const path = posix.normalize(unescapeBytes(line.subarray(FILE_PREFIX.length)).toString("utf8"));
      this.current = this.map.get(path);
      if (this.current === undefined) {
        this.current = [];
        this.map.set(path, this.current);
      }
      return;
    }
    if (this.current === undefined || line[0] === 0x23) return;
    const eq = line.indexOf(0x3d);
    const rawName = eq < 0 ? line : line.subarray(0, eq);
    const value = eq < 0 ? Buffer.alloc(0) : parseValue(line.subarray(eq + 1));
    this.current.push({ name: unescapeBytes(rawName).toString("utf8"), value });
  }
}

interface RunResult {
  code: number | null;
  stderr: string;
  missing: boolean;
}

/** Runs a tool, feeding `input` to stdin and `onStdout` with its output. */
function run(cmd: string, args: string[], opts: XattrOptions, input?: Buffer, onStdout?: (b: Buffer) => void): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      stdio: [input === undefined ? "ignore" : "pipe", onStdout === undefined ? "ignore" : "pipe", "pipe"],
      env: { ...process.env, LC_ALL: "C" },
      ...(opts.signal !== undefined ? { signal: opts.signal } : {}),
    });
    let stderr = "";
    let settled = false;
    child.stderr?.on("data", (d: Buffer) => {
      if (stderr.length < 64 * 1024) stderr += d.toString("utf8");
    });
    if (onStdout !== undefined) child.stdout?.on("data", onStdout);
    child.on("error", (err: NodeJS.ErrnoException) => {
      if (settled) return;
      settled = true;
      if (opts.signal?.aborted) reject(abortError(opts.signal));
      else if (err.code === "ENOENT") resolve({ code: null, stderr: "", missing: true });
      else reject(err);
    });
    child.on("close", (code) => {
      if (settled) return;
      settled = true;
      if (opts.signal?.aborted) reject(abortError(opts.signal));
      else resolve({ code, stderr, missing: false });
    });
    if (input !== undefined && child.stdin !== null) {
      child.stdin.on("error", () => {}); // EPIPE when the tool dies early: its exit code tells.
      child.stdin.end(input);
    }
  });
}

/**
 * The extended attributes of every entry under `root` (symlinks not
 * followed), keyed by normalised absolute path; entries without any are
 * absent. Without getfattr: one warning and an empty map.
 */
export async function readXattrs(root: string, opts: XattrOptions = {}): Promise<Map<string, Xattr[]>> {
  const parser = new GetfattrParser();
  const args = ["-R", "-P", "-h", "-d", "-m", "-", "-e", "base64", "--absolute-names", "--", root];
  const res = await run("getfattr", args, opts, undefined, (b) => parser.push(b));
  if (res.missing) {
    opts.onWarning?.("getfattr not found (install the attr package): extended attributes are not backed up");
    return new Map();
  }
  if (res.code !== 0 && res.stderr !== "") {
    const lines = res.stderr.trimEnd().split("\n");
    const more = lines.length > 1 ? ` (and ${lines.length - 1} more)` : "";
    opts.onWarning?.(`reading extended attributes: ${lines[0] ?? ""}${more}`);
  }
  return parser.end();
}

export interface XattrEntry {
  path: string;
  xattrs: Xattr[];
}

export interface XattrFailure {
  path: string;
  error: string;
}

/** A dump in getfattr's format, as `setfattr --restore` reads it. */
export function formatDump(entries: readonly XattrEntry[]): Buffer {
  const parts: string[] = [];
  for (const e of entries) {
    if (e.xattrs.length === 0) continue;
    parts.push(`# file: ${escapeText(e.path)}\n`);
    for (const x of e.xattrs) parts.push(`${escapeText(x.name, true)}=0s${Buffer.from(x.value).toString("base64")}\n`);
    parts.push("\n");
  }
  return Buffer.from(parts.join(""), "utf8");
}

/**
 * Sets the attributes of every entry (symlinks themselves, never their
 * targets) with one `setfattr -h --restore=-` run and returns the entries
 * that failed. Without setfattr, `missing` is set and every entry failed.
 */
export async function setXattrs(
  entries: readonly XattrEntry[],
  opts: XattrOptions = {},
): Promise<{ failures: XattrFailure[]; missing: boolean }> {
  const todo = entries.filter((e) => e.xattrs.length > 0);
  if (todo.length === 0) return { failures: [], missing: false };
  const res = await run("setfattr", ["-h", "--restore=-"], opts, formatDump(todo));
  if (res.missing) {
    return { failures: todo.map((e) => ({ path: e.path, error: "setfattr not found" })), missing: true };
  }
  if (res.code === 0) return { failures: [], missing: false };
  // setfattr goes on after a failure and names each failing path on stderr.
  const failures: XattrFailure[] = [];
  for (const e of todo) {
    const marker = `setfattr: ${e.path}: `;
    const at = res.stderr.indexOf(marker);
    if (at < 0) continue;
    const endOfLine = res.stderr.indexOf("\n", at + marker.length);
    failures.push({ path: e.path, error: res.stderr.slice(at + marker.length, endOfLine < 0 ? undefined : endOfLine) });
  }
  if (failures.length > 0) return { failures, missing: false };
  // Nothing attributable (odd names, truncated stderr): one run per entry.
  for (const e of todo) {
    const one = await run("setfattr", ["-h", "--restore=-"], opts, formatDump([e]));
    if (one.code !== 0) failures.push({ path: e.path, error: one.stderr.trim() || `setfattr exited with ${one.code}` });
  }
  return { failures, missing: false };
}
