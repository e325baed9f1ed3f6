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

/** Where an `s3:` or `s3+http:` location points (docs/CLI.md, "S3"). */
export interface S3Location {
  /** The endpoint named in the location (host[:port]), if any. */
  endpoint: string | undefined;
  bucket: string;
  /** The key prefix, without leading or trailing `/` ("" for the bucket's root). */
  prefix: string;
  /** false for `s3+http:`. */
  tls: boolean;
}

/**
 * Parses `s3://[ENDPOINT/]BUCKET[/PREFIX]` (or `s3+http://`): the first
 * component is the endpoint when it holds a `.` or `:`, as in restic's
 * `s3:` locations, unless `endpointGiven` (an `endpoint` parameter), when
 * it is always the bucket.
 */
export function parseS3Location(loc: Location, endpointGiven = false): S3Location {
  const parts = loc.rest.split("/").filter((p) => p !== "");
  const endpoint = !endpointGiven && parts.length > 0 && /[.:]/.test(parts[0]!) ? parts.shift() : undefined;
  const bucket = parts.shift();
  if (bucket === undefined) throw new CofferError("USAGE", `location "${loc.raw}" names no bucket: write ${loc.proto}://[ENDPOINT/]BUCKET[/PREFIX]`);
  if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket)) {
    throw new CofferError("USAGE", `location "${loc.raw}": "${bucket}" is not a valid bucket name (3 to 63 characters: lower-case letters, digits, "." and "-")`);
  }
  return { endpoint, bucket, prefix: parts.join("/"), tls: loc.proto !== "s3+http" };
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
