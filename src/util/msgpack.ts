/**
 * msgpack decoding of bytes coffer did not just make (read back from a
 * store): the decoder's own limits are set from the input, since an array
 * header claiming 2^25 elements makes it allocate a 256 MiB array before it
 * finds that five bytes hold none of them. Every element takes a byte at
 * least and every map entry two, so a valid encoding never exceeds these
 * limits.
 */
import { decode } from "@msgpack/msgpack";

export interface BoundedDecodeOptions {
  /** msgpack's int64 and uint64 as bigint (as the tree, header and configuration are encoded). */
  useBigInt64?: boolean;
}

/**
 * The value `bytes` encode; on any failure (truncated, extra bytes, an
 * unknown type, a length past the end) throws what `undecodable` makes of
 * msgpack's reason.
 */
export function decodeBounded(bytes: Uint8Array, undecodable: (reason: string) => Error, o: BoundedDecodeOptions = {}): unknown {
  try {
    return decode(bytes, {
      useBigInt64: o.useBigInt64 === true,
      maxArrayLength: bytes.byteLength,
      maxMapLength: bytes.byteLength >>> 1,
    });
  } catch (e) {
    throw undecodable(e instanceof Error ? e.message : String(e));
  }
}
