/**
 * Names are bytes (docs/FORMAT.md, "Names"). In memory a name, path or
 * symlink target is a JS string in which every byte that is not part of a
 * valid UTF-8 sequence is the lone surrogate U+DC80..U+DCFF (Python's
 * "surrogateescape", PEP 383). Valid UTF-8 never decodes to a lone
 * surrogate, so the mapping is one-to-one: nameToBytes(nameFromBytes(b))
 * is b for every byte string, and a name that is valid UTF-8 is the plain
 * string it always was. Convert only at the edges: the OS (fsPath), the
 * tree format, tar headers, the plugin wire and the terminal.
 */

const ESCAPE_BASE = 0xdc00;

/** Whether `s` holds escaped bytes (a name that is not valid UTF-8). */
export function isRawName(s: string): boolean {
  return !s.isWellFormed();
}

/** The name of these bytes: UTF-8 where it is valid, each other byte as U+DC80..U+DCFF. */
export function nameFromBytes(b: Uint8Array): string {
  const buf = Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  const fast = buf.toString("utf8");
  // U+FFFD marks an invalid sequence (or a real U+FFFD: the slow path keeps it).
  if (!fast.includes("\ufffd")) return fast;
  return decodeEscaping(buf);
}

function decodeEscaping(b: Uint8Array): string {
  let out = "";
  let runStart = 0;
  let i = 0;
  const flush = (end: number) => {
    if (end > runStart) out += Buffer.from(b.buffer, b.byteOffset + runStart, end - runStart).toString("utf8");
  };
  while (i < b.length) {
    const n = validSequenceLength(b, i);
    if (n > 0) {
      i += n;
      continue;
    }
    flush(i);
    out += String.fromCharCode(ESCAPE_BASE + (b[i] as number));
    i += 1;
    runStart = i;
  }
  flush(i);
  return out;
}

/** Length of the well-formed UTF-8 sequence at b[i] (Unicode table 3-7), or 0. */
function validSequenceLength(b: Uint8Array, i: number): number {
  const c = b[i] as number;
  if (c < 0x80) return 1;
  const cont = (k: number, lo = 0x80, hi = 0xbf) => {
    const x = b[i + k];
    return x !== undefined && x >= lo && x <= hi;
  };
  if (c >= 0xc2 && c <= 0xdf) return cont(1) ? 2 : 0;
  if (c === 0xe0) return cont(1, 0xa0) && cont(2) ? 3 : 0;
  if ((c >= 0xe1 && c <= 0xec) || c === 0xee || c === 0xef) return cont(1) && cont(2) ? 3 : 0;
  if (c === 0xed) return cont(1, 0x80, 0x9f) && cont(2) ? 3 : 0;
  if (c === 0xf0) return cont(1, 0x90) && cont(2) && cont(3) ? 4 : 0;
  if (c >= 0xf1 && c <= 0xf3) return cont(1) && cont(2) && cont(3) ? 4 : 0;
  if (c === 0xf4) return cont(1, 0x80, 0x8f) && cont(2) && cont(3) ? 4 : 0;
  return 0;
}

/**
 * The bytes of a name: UTF-8, with each escaped byte (U+DC80..U+DCFF) as
 * itself. A lone surrogate outside that range cannot come from
 * nameFromBytes; it is written as U+FFFD, as the OS would be given it.
 */
export function nameToBytes(s: string): Buffer {
  if (s.isWellFormed()) return Buffer.from(s, "utf8");
  const parts: Buffer[] = [];
  let runStart = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0xd800 || c > 0xdfff) continue;
    if (c <= 0xdbff) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        i++; // a valid pair
        continue;
      }
    }
    parts.push(Buffer.from(s.slice(runStart, i), "utf8"));
    parts.push(c >= 0xdc80 && c <= 0xdcff ? Buffer.of(c - ESCAPE_BASE) : Buffer.from("\ufffd", "utf8"));
    runStart = i + 1;
  }
  parts.push(Buffer.from(s.slice(runStart), "utf8"));
  return Buffer.concat(parts);
}

/** A path for node:fs calls: the string itself when it is valid UTF-8, else its bytes. */
export function fsPath(s: string): string | Buffer {
  return s.isWellFormed() ? s : nameToBytes(s);
}

/** The name as valid Unicode, each escaped byte as U+FFFD: for JSON's `name` and messages. */
export function lossyName(s: string): string {
  return s.toWellFormed();
}

const BACKSLASH = 0x5c;

/**
 * A name for display, unambiguous and safe on a terminal, in the style of
 * GNU `ls -b`: a backslash is `\\`, and a control character (C0, DEL, C1)
 * or a byte that is not valid UTF-8 is `\ooo` (octal), so `lat\xe9` shows
 * as `lat\351`. unescapeName() reverses it.
 */
export function escapeName(s: string): string {
  // eslint-disable-next-line no-control-regex
  if (s.isWellFormed() && !/[\\\u0000-\u001f\u007f-\u009f]/.test(s)) return s;
  return escapeUnsafe(s, true);
}

/**
 * Text for a terminal (a message, which may quote names): each control
 * character (C0 including newline and tab, DEL, C1) and each byte that is
 * not valid UTF-8 as `\ooo`, as escapeName() shows them; backslashes and
 * everything else as they are, so a name escapeName() already escaped in
 * the text stays as it is. Every human line coffer prints passes through
 * it (src/cli/format.ts, humanLine).
 */
export function escapeControls(s: string): string {
  // eslint-disable-next-line no-control-regex
  if (s.isWellFormed() && !/[\u0000-\u001f\u007f-\u009f]/.test(s)) return s;
  return escapeUnsafe(s, false);
}

function escapeUnsafe(s: string, backslash: boolean): string {
  let out = "";
  for (const ch of s) {
    const cp = ch.codePointAt(0) as number;
    if (cp === BACKSLASH && backslash) out += "\\\\";
    else if (cp < 0x20 || (cp >= 0x7f && cp <= 0x9f)) out += octalBytes(Buffer.from(ch, "utf8"));
    else if (cp >= 0xdc80 && cp <= 0xdcff) out += octal(cp - ESCAPE_BASE);
    else if (cp >= 0xd800 && cp <= 0xdfff) out += "\\357\\277\\275"; // a stray surrogate: U+FFFD's bytes, as nameToBytes writes it
    else out += ch;
  }
  return out;
}

const octal = (byte: number) => `\\${byte.toString(8).padStart(3, "0")}`;
const octalBytes = (b: Uint8Array) => Array.from(b, octal).join("");

/**
 * The name escapeName() shows: `\\` is a backslash and `\ooo` a byte; any
 * other backslash stands for itself. The bytes are then read as a name, so
 * `caf\303\251` is `café`.
 */
export function unescapeName(s: string): string {
  if (!s.includes("\\")) return s;
  const src = Buffer.from(s, "utf8");
  const out = Buffer.alloc(src.length);
  let n = 0;
  const isOctal = (c: number | undefined) => c !== undefined && c >= 0x30 && c <= 0x37;
  for (let i = 0; i < src.length; i++) {
    const c = src[i] as number;
    if (c === BACKSLASH && src[i + 1] === BACKSLASH) {
      out[n++] = BACKSLASH;
      i++;
    } else if (c === BACKSLASH && isOctal(src[i + 1]) && isOctal(src[i + 2]) && isOctal(src[i + 3]) && (src[i + 1] as number) <= 0x33) {
      out[n++] = (((src[i + 1] as number) - 0x30) << 6) | (((src[i + 2] as number) - 0x30) << 3) | ((src[i + 3] as number) - 0x30);
      i += 3;
    } else out[n++] = c;
  }
  return nameFromBytes(out.subarray(0, n));
}

/** Byte order of two names: the order of entries in a tree. */
export function compareNames(a: string, b: string): number {
  if (a.isWellFormed() && b.isWellFormed()) return Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8"));
  return Buffer.compare(nameToBytes(a), nameToBytes(b));
}
