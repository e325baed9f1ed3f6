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

/** Where an `sftp://[USER@]HOST[:PORT]/PATH` location points. */
export interface SftpAddress {
  user: string | undefined;
  /** The host name or address (an IPv6 address without its brackets). */
  host: string;
  port: number | undefined;
  /** The path on the server: relative to the login directory, or absolute when written with two slashes (`sftp://HOST//srv/repo`). */
  path: string;
}

const SFTP_AUTHORITY = /^(?:([^@/]+)@)?(\[[0-9A-Fa-f:.]+\]|[^:/[\]@]+)(?::(\d+))?(?:\/(.*))?$/s;

/** Parses what follows `sftp://`; a USAGE error naming the location when it is not of that form or has no path. */
export function parseSftpLocation(loc: Location): SftpAddress {
  const bad = (why: string) => new CofferError("USAGE", `location "${loc.raw}": ${why} (the form is sftp://[USER@]HOST[:PORT]/PATH)`);
  if (!loc.slashes) throw bad("expected sftp://");
  const m = SFTP_AUTHORITY.exec(loc.rest);
  if (!m) throw bad("not a host and path");
  const host = m[2]!.startsWith("[") ? m[2]!.slice(1, -1) : m[2]!;
  const port = m[3] === undefined ? undefined : Number(m[3]);
  if (port !== undefined && (port < 1 || port > 65535)) throw bad(`port ${m[3]} out of range`);
  const p = m[4] ?? "";
  if (p === "" || p === "/") throw bad("no path");
  return { user: m[1] === undefined ? undefined : decodeURIComponent(m[1]), host, port, path: p.length > 1 && p.endsWith("/") ? p.slice(0, -1) : p };
}
