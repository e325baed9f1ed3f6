/**
 * This client's record of when it verified each packfile of a repository
 * (docs/FORMAT.md, "Verification cache"): what a check on a store it cannot
 * write remembers, and what it merges with the state's `verified` records.
 * One file per repository ID, $XDG_CACHE_HOME/coffer/verified/<id hex>
 * (else ~/.cache/coffer/...), written whole to a temporary file and renamed
 * into place: msgpack `{v: 1, id: bin(32), verified: [[pack bin(32), time
 * int], ...]}` followed by the 32-byte MAC of those bytes under the
 * repository's MAC key. A file that is damaged, or another repository's,
 * is a warning and is rewritten; one that cannot be written is a warning.
 */
import { promises as fsp } from "node:fs";
import { join } from "node:path";
import { encode } from "@msgpack/msgpack";
import type { Mac } from "../repository/crypto.js";
import { CorruptError } from "../util/errors.js";
import { equalBytes, fromHex, toHex } from "../util/hex.js";
import { decodeBounded } from "../util/msgpack.js";
import { knownDir, writeCacheFile } from "./known.js";

const CACHE_VERSION = 1;
const MAC_BYTES = 32;

export function verifiedCacheFile(env: NodeJS.ProcessEnv, id: Uint8Array): string {
  return join(knownDir(env), "verified", toHex(id));
}

function encodeVerifiedCache(id: Uint8Array, times: ReadonlyMap<string, number>, mac: Mac): Uint8Array {
  const raw = encode({ v: CACHE_VERSION, id, verified: [...times].map(([hex, t]) => [fromHex(hex), t]) });
  return Buffer.concat([raw, mac.mac(raw)]);
}

/** The times (packfile hex -> ms since the epoch) the file holds; a CorruptError if it does not authenticate, decode, or name repository `id`. */
function decodeVerifiedCache(bytes: Uint8Array, id: Uint8Array, mac: Mac): Map<string, number> {
  const what = "verification cache";
  if (bytes.byteLength < MAC_BYTES) throw new CorruptError(what, "too short");
  const raw = bytes.subarray(0, bytes.byteLength - MAC_BYTES);
  if (!equalBytes(mac.mac(raw), bytes.subarray(bytes.byteLength - MAC_BYTES))) throw new CorruptError(what, "authentication failed (damaged, or made for another repository)");
  const o = decodeBounded(raw, (why) => new CorruptError(what, `undecodable (${why})`)) as { v?: unknown; id?: unknown; verified?: unknown } | null;
  if (typeof o !== "object" || o === null || o.v !== CACHE_VERSION || !(o.id instanceof Uint8Array) || !Array.isArray(o.verified)) throw new CorruptError(what, "bad structure");
  if (!equalBytes(o.id, id)) throw new CorruptError(what, "made for another repository");
  const out = new Map<string, number>();
  for (const r of o.verified as unknown[]) {
    if (!Array.isArray(r) || r.length !== 2 || !(r[0] instanceof Uint8Array) || r[0].byteLength !== MAC_BYTES || !Number.isSafeInteger(r[1])) throw new CorruptError(what, "bad record");
    out.set(toHex(r[0]), r[1] as number);
  }
  return out;
}

/** The cache's times, or none when there is no file; a file that cannot be read or used is a warning. */
export async function readVerifiedCache(file: string, id: Uint8Array, mac: Mac, warn: (m: string) => void): Promise<Map<string, number>> {
  let bytes: Uint8Array;
  try {
    bytes = await fsp.readFile(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== "ENOENT" && code !== "ENOTDIR") warn(`cannot read ${file} (${code ?? (e as Error).message}): ignoring it`);
    return new Map();
  }
  try {
    return decodeVerifiedCache(bytes, id, mac);
  } catch (e) {
    warn(`ignoring ${file}: ${(e as Error).message} (it is rewritten)`);
    return new Map();
  }
}

export async function writeVerifiedCache(file: string, id: Uint8Array, times: ReadonlyMap<string, number>, mac: Mac, warn: (m: string) => void): Promise<void> {
  try {
    await writeCacheFile(file, encodeVerifiedCache(id, times, mac));
  } catch (e) {
    warn(`cannot record the verification in ${file} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
}
