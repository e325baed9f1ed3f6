/**
 * Locations name a source, a destination or a repository:
 * `proto:rest` or `proto://rest`, where the protocol is at least two
 * characters of [A-Za-z0-9+.-] (so `C:` and `./a:b` are paths). A bare path
 * means `fs:` (or `ptar:` for a repository path ending in `.ptar`); paths of
 * LOCALFS and FILE connectors are made absolute against the working
 * directory, except `-` (the standard stream).
 */
import { isAbsolute, resolve } from "node:path";
import { CofferError } from "../util/errors.js";

export interface Location {
  /** The protocol, lower-cased (`fs`, `tar+gz`, `s3` ...). */
  proto: string;
  /** What follows `proto:` or `proto://`. */
  rest: string;
  /** Whether the location was written `proto://rest`. */
  slashes: boolean;
  /** The location as given, with an implicit `fs:`/`ptar:` made explicit. */
  raw: string;
}

const PROTO = /^([A-Za-z0-9+.-]{2,}):(\/\/)?(.*)$/s;

export function parseLocation(s: string, o: { forStore?: boolean } = {}): Location {
  if (s === "") throw new CofferError("USAGE", "empty location");
  const m = PROTO.exec(s);
  if (!m) {
    const proto = o.forStore && s.endsWith(".ptar") ? "ptar" : "fs";
    return { proto, rest: s, slashes: false, raw: `${proto}:${s}` };
  }
  const proto = m[1]!.toLowerCase();
  return { proto, rest: m[3]!, slashes: m[2] !== undefined, raw: s };
}

/** The path of a LOCALFS or FILE location, absolute (`-` stays `-`); a USAGE error when empty. */
export function localPath(loc: Location, cwd: string): string {
  if (loc.rest === "-") return "-";
  if (loc.rest === "") throw new CofferError("USAGE", `location "${loc.raw}" needs a path`);
  return isAbsolute(loc.rest) ? resolve(loc.rest) : resolve(cwd, loc.rest);
}
