/**
 * Glob patterns for `locate` (docs/CLI.md, "locate"): `*` any run of
 * characters but "/", `?` one character but "/", `[...]` one of a set
 * (`[!...]` or `[^...]` none of it, `a-z` ranges), `**` as a whole
 * component any number of components, `\c` the character c itself and
 * `\ooo` a byte, as escapeName() shows names that are not UTF-8. A leading
 * dot is matched like any character. Compiled to a RegExp over names in
 * the escaped-surrogate form of ./names.ts.
 */
import { nameFromBytes } from "./names.js";

export interface Glob {
  /** Whether the pattern holds "/": it is then matched against the full path, else against the name. */
  readonly fullPath: boolean;
  matches(subject: string): boolean;
}

const isOctal = (c: string | undefined) => c !== undefined && c >= "0" && c <= "7";
const codeOf = (ch: string) => `\\u{${ch.codePointAt(0)!.toString(16)}}`;

/** Characters of `p` with escapes resolved: each is [char, literal?]; `\ooo` bytes are decoded as a name with their neighbours. */
function characters(p: string): [string, boolean][] {
  const out: [string, boolean][] = [];
  const chars = [...p];
  for (let i = 0; i < chars.length; i++) {
    const c = chars[i]!;
    if (c !== "\\") {
      out.push([c, false]);
      continue;
    }
    if (isOctal(chars[i + 1]) && isOctal(chars[i + 2]) && isOctal(chars[i + 3]) && chars[i + 1]! <= "3") {
      const bytes: number[] = [];
      while (chars[i] === "\\" && isOctal(chars[i + 1]) && isOctal(chars[i + 2]) && isOctal(chars[i + 3]) && chars[i + 1]! <= "3") {
        bytes.push(parseInt(chars.slice(i + 1, i + 4).join(""), 8));
        i += 4;
      }
      i--;
      for (const ch of nameFromBytes(Uint8Array.from(bytes))) out.push([ch, true]);
    } else if (i + 1 < chars.length) out.push([chars[++i]!, true]);
    else out.push(["\\", true]);
  }
  return out;
}

/** The RegExp source of one path component's pattern (never "**"). */
function componentSource(cs: [string, boolean][]): string {
  let src = "";
  for (let i = 0; i < cs.length; i++) {
    const [c, lit] = cs[i]!;
    if (lit) src += codeOf(c);
    else if (c === "*") src += "[^/]*";
    else if (c === "?") src += "[^/]";
    else if (c === "[") {
      const end = classEnd(cs, i);
      if (end < 0) src += codeOf(c);
      else {
        src += classSource(cs.slice(i + 1, end));
        i = end;
      }
    } else src += codeOf(c);
  }
  return src;
}

/** The index of the `]` closing the class opened at `open`, or -1 (then `[` is literal). */
function classEnd(cs: [string, boolean][], open: number): number {
  let i = open + 1;
  if (cs[i] && !cs[i]![1] && (cs[i]![0] === "!" || cs[i]![0] === "^")) i++;
  if (cs[i] && cs[i]![0] === "]") i++; // a leading ] is a member
  for (; i < cs.length; i++) if (cs[i]![0] === "]" && !cs[i]![1]) return i;
  return -1;
}

function classSource(body: [string, boolean][]): string {
  let negate = false;
  let i = 0;
  if (body[0] && !body[0][1] && (body[0][0] === "!" || body[0][0] === "^")) {
    negate = true;
    i = 1;
  }
  let src = "";
  for (; i < body.length; i++) {
    const [c] = body[i]!;
    const next = body[i + 1];
    if (next && next[0] === "-" && !next[1] && body[i + 2]) {
      src += `${codeOf(c)}-${codeOf(body[i + 2]![0])}`;
      i += 2;
    } else src += codeOf(c);
  }
  return negate ? `[^/${src}]` : `[${src}]`;
}

/**
 * Compiles `pattern`; a pattern with "/" not starting with "/" matches at
 * any depth (as if it began with "**\/"). A trailing "/" is dropped; a
 * trailing "**" stands for one or more components (what is below, not the
 * directory itself), any other "**" for zero or more.
 */
export function compileGlob(pattern: string): Glob {
  const fullPath = pattern.includes("/");
  const components = pattern.split("/");
  if (fullPath) {
    while (components.length > 1 && components.at(-1) === "") components.pop();
    if (components[0] === "") components.shift();
    else components.unshift("**");
  }
  let src = "";
  for (let k = 0; k < components.length; k++) {
    const c = components[k]!;
    const last = k === components.length - 1;
    if (c === "**" && !fullPath) src += ".*";
    else if (c === "**") src += last ? "(?:/[^/]*)+" : "(?:/[^/]*)*?";
    else src += (fullPath ? "/" : "") + componentSource(characters(c));
  }
  const re = new RegExp(`^${src}$`, "u");
  return { fullPath, matches: (s) => re.test(s) };
}
