/**
 * Keys and MACs. The master key (32 random bytes, or derived from the
 * repository ID for a plaintext repository) is expanded with HKDF-SHA256
 * into independent subkeys; see docs/FORMAT.md, "Keys".
 */
import { createHmac, hkdfSync, randomBytes } from "node:crypto";
import { createRequire } from "node:module";
import { createBLAKE3, type IHasher } from "hash-wasm";

/** A keyed BLAKE3 hasher of @napi-rs/blake-hash (native, prebuilt per platform); reset() keeps the key. */
interface NativeHasher {
  reset(): void;
  update(input: Uint8Array): unknown;
  digestBuffer(): Buffer;
}
interface NativeBlake3 {
  newKeyed(key: Buffer): NativeHasher;
}

let native: NativeBlake3 | null | undefined;
/**
 * The native BLAKE3, or null where its package has no build for this
 * platform (then hash-wasm's, the same function, several times slower),
 * for the chunk MACs and the packfile names of every backup
 * (docs/PERFORMANCE.md).
 */
export function nativeBlake3(): NativeBlake3 | null {
  if (native === undefined) {
    try {
      native = (createRequire(import.meta.url)("@napi-rs/blake-hash") as { Blake3Hasher: NativeBlake3 }).Blake3Hasher;
    } catch {
      native = null;
    }
  }
  return native;
}

/** One implementation of keyed BLAKE3-256 (see Mac). */
interface Blake3Impl {
  mac(parts: readonly Uint8Array[]): Uint8Array;
  stream(): MacStream;
}

function nativeImpl(n: NativeBlake3, key: Uint8Array): Blake3Impl {
  const k = Buffer.from(key);
  const h = n.newKeyed(k);
  const out = (b: Buffer) => new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  return {
    mac(parts) {
      h.reset();
      for (const p of parts) h.update(p);
      return out(h.digestBuffer());
    },
    stream() {
      const sh = n.newKeyed(k);
      return { update: (parts) => void parts.forEach((p) => sh.update(p)), digest: () => out(sh.digestBuffer()) };
    },
  };
}

function wasmImpl(h: IHasher): Blake3Impl {
  return {
    mac(parts) {
      h.init();
      for (const p of parts) h.update(p);
      return h.digest("binary");
    },
    // Keeps the hasher's state between calls (~2 KiB), so that other MACs may interleave.
    stream() {
      h.init();
      let state = h.save();
      return {
        update: (parts) => {
          h.load(state);
          for (const p of parts) h.update(p);
          state = h.save();
        },
        digest: () => {
          h.load(state);
          return h.digest("binary");
        },
      };
    },
  };
}

export type MacAlgorithm = "blake3" | "hmac-sha256";
export const MAC_SIZE = 32;

export interface Subkeys {
  /** Keys chunk and object MACs (content addressing). */
  mac: Uint8Array;
  /** Derives per-blob AES-256-GCM keys (encrypted repositories). */
  enc: Uint8Array;
  /** Keys the HMAC tag of blobs in plaintext repositories. */
  tag: Uint8Array;
  /** Seeds the chunker's gear table. */
  gear: Uint8Array;
}

function hkdf(master: Uint8Array, info: string): Uint8Array {
  return new Uint8Array(hkdfSync("sha256", master, new Uint8Array(0), `coffer/v1/${info}`, 32));
}

export function deriveSubkeys(master: Uint8Array): Subkeys {
  return { mac: hkdf(master, "mac"), enc: hkdf(master, "enc"), tag: hkdf(master, "tag"), gear: hkdf(master, "gear") };
}

/**
 * The key of a version-2 configuration's MAC (HMAC-SHA256, docs/FORMAT.md,
 * "Configuration"): outside the `coffer/v1/` subkeys, so no other use shares it.
 */
export function configMacKey(master: Uint8Array): Uint8Array {
  return new Uint8Array(hkdfSync("sha256", master, new Uint8Array(0), "coffer/v2/config", 32));
}

/** The master key of a plaintext repository: public, since it derives from the repository ID. */
export function plaintextMasterKey(repositoryId: Uint8Array): Uint8Array {
  return new Uint8Array(hkdfSync("sha256", repositoryId, new Uint8Array(0), "coffer/v1/plaintext-master", 32));
}

export function randomKey(n = 32): Uint8Array {
  return new Uint8Array(randomBytes(n));
}

/** A MAC computed over several calls: update() in order, then digest() once. */
export interface MacStream {
  update(parts: readonly Uint8Array[]): void;
  digest(): Uint8Array;
}

/** A keyed MAC function: `mac()` of a buffer, `macParts()` of a sequence of buffers, `stream()` for one fed piecewise. */
export class Mac {
  private constructor(
    readonly algorithm: MacAlgorithm,
    private readonly key: Uint8Array,
    private readonly blake3: Blake3Impl | null,
    /** Which BLAKE3 computes it ("native" or "wasm"; "none" for HMAC). */
    readonly implementation: "native" | "wasm" | "none",
  ) {}

  /** `o.wasm`: use hash-wasm's BLAKE3 even where the native one loads (tests compare the two). */
  static async create(algorithm: MacAlgorithm, key: Uint8Array, o: { wasm?: boolean } = {}): Promise<Mac> {
    if (algorithm === "blake3") {
      const n = o.wasm ? null : nativeBlake3();
      if (n) return new Mac(algorithm, key, nativeImpl(n, key), "native");
      return new Mac(algorithm, key, wasmImpl(await createBLAKE3(256, key)), "wasm");
    }
    if (algorithm === "hmac-sha256") return new Mac(algorithm, key, null, "none");
    throw new TypeError(`unknown MAC algorithm ${JSON.stringify(algorithm)}`);
  }

  mac(data: Uint8Array): Uint8Array {
    if (this.blake3) return this.blake3.mac([data]);
    return new Uint8Array(createHmac("sha256", this.key).update(data).digest());
  }

  /**
   * An incremental MAC, fed in several calls that other uses of this Mac may
   * interleave with.
   */
  stream(): MacStream {
    if (this.blake3) return this.blake3.stream();
    const hm = createHmac("sha256", this.key);
    return {
      update: (parts) => void parts.forEach((p) => hm.update(p)),
      digest: () => new Uint8Array(hm.digest()),
    };
  }

  /** The MAC of the concatenation of `parts` (synchronous: no other caller can interleave). */
  macParts(parts: readonly Uint8Array[]): Uint8Array {
    if (this.blake3) return this.blake3.mac(parts);
    const hm = createHmac("sha256", this.key);
    for (const p of parts) hm.update(p);
    return new Uint8Array(hm.digest());
  }
}
