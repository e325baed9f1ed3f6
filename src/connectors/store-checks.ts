/**
 * The checks every built-in store makes before touching its objects, in
 * one place: resource, MAC and range arguments (programming errors, thrown
 * as TypeError or RangeError), the range past an object's end (CORRUPT),
 * a read-only store's refusal, and the errors of create() and open(). Also
 * reading a put's data whole, for the stores that must hold it, and
 * yielding a listing's MACs.
 */
import { abortError, CofferError, CorruptError, throwIfAborted } from "../util/errors.js";
import { fromHex, toHex } from "../util/hex.js";
import { Resource, StoreMode } from "./flags.js";
import type { Mac, Range } from "./store.js";

/** Bytes of a store MAC. */
export const MAC_BYTES = 32;

const RESOURCES: ReadonlySet<unknown> = new Set(Object.values(Resource));

export function checkResource(resource: Resource): void {
  if (!RESOURCES.has(resource)) throw new TypeError(`unknown store resource ${String(resource)}`);
}

/** The MAC's lower-case hex, after checking it is a MAC. */
export function macHex(mac: Mac): string {
  if (!(mac instanceof Uint8Array) || mac.byteLength !== MAC_BYTES) {
    throw new TypeError(`a store MAC is ${MAC_BYTES} bytes`);
  }
  return toHex(mac);
}

export function checkRange(range: Range): void {
  const ok = (n: number) => Number.isSafeInteger(n) && n >= 0;
  if (!ok(range.offset) || !ok(range.length)) {
    throw new RangeError(`invalid range ${range.offset}+${range.length}`);
  }
}

/**
 * The bytes a get() of `range` (the whole object when undefined) reads
 * from an object of `size` bytes; a range past the end is CORRUPT, never a
 * short answer. `what` and `data` name the object in the error.
 */
export function rangeWithin(range: Range | undefined, size: number, what: string, data: Record<string, unknown>): Range {
  const offset = range?.offset ?? 0;
  const length = range?.length ?? size;
  if (offset + length > size) {
    throw new CorruptError(what, `range ${offset}+${length} past the end (${size} bytes)`, { ...data, size });
  }
  return { offset, length };
}

/** The MACs of `names` (lower-case hex) for list(), checking for an abort before each. */
export async function* macsOf(names: readonly string[], signal?: AbortSignal): AsyncIterable<Mac> {
  for (const name of names) {
    throwIfAborted(signal);
    yield fromHex(name);
  }
}

/** What mode() gives: READ, and WRITE unless the store was opened read-only. */
export function storeMode(readOnly: boolean): number {
  return readOnly ? StoreMode.READ : StoreMode.READ | StoreMode.WRITE;
}

/** READ_ONLY before a write (`op`) to a store opened read-only; `tag` names the store type. */
export function refuseIfReadOnly(readOnly: boolean, tag: string, root: string, op: string): void {
  if (readOnly) throw new CofferError("READ_ONLY", `[${tag}] ${root} is read-only: ${op} refused`, { root });
}

/** What open() gives where there is no repository. */
export function noRepository(root: string): CofferError {
  return new CofferError("NO_REPOSITORY", `no repository at ${root}`, { root });
}

/** What create() gives where a repository is already. */
export function repositoryExists(root: string): CofferError {
  return new CofferError("REPOSITORY_EXISTS", `a repository already exists at ${root}`, { root });
}

/** What replaceConfig() gives when the configuration is no longer the one the caller read. */
export function configChanged(root: string): CofferError {
  return new CofferError("LOCKED", `the repository configuration at ${root} changed since it was read (another \`coffer key\` ran meanwhile): nothing was replaced; run the command again`, { root });
}

/**
 * A put's data as one fresh array (a caller can never mutate what is
 * stored; producers may reuse their buffers). A source's own error passes
 * through unchanged unless the call was aborted.
 */
export async function collectPut(data: Uint8Array | AsyncIterable<Uint8Array>, signal?: AbortSignal): Promise<Uint8Array> {
  if (data instanceof Uint8Array) return new Uint8Array(data);
  const pieces: Uint8Array[] = [];
  let size = 0;
  try {
    for await (const piece of data) {
      throwIfAborted(signal);
      pieces.push(new Uint8Array(piece));
      size += piece.byteLength;
    }
  } catch (e) {
    throw signal?.aborted ? abortError(signal) : e;
  }
  const out = new Uint8Array(size);
  let at = 0;
  for (const p of pieces) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}
