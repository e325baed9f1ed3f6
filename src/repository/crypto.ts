/**
 * Keys and MACs. The master key (32 random bytes, or derived from the
 * repository ID for a plaintext repository) is expanded with HKDF-SHA256
 * into independent subkeys; see docs/FORMAT.md, "Keys".
 */
import { createHmac, hkdfSync, randomBytes } from "node:crypto";
import { createBLAKE3, type IHasher } from "hash-wasm";

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
    private readonly hasher: IHasher | null,
  ) {}

  static async create(algorithm: MacAlgorithm, key: Uint8Array): Promise<Mac> {
    if (algorithm === "blake3") return new Mac(algorithm, key, await createBLAKE3(256, key));
    if (algorithm === "hmac-sha256") return new Mac(algorithm, key, null);
    throw new TypeError(`unknown MAC algorithm ${JSON.stringify(algorithm)}`);
  }

  mac(data: Uint8Array): Uint8Array {
    const h = this.hasher;
    if (h === null) return new Uint8Array(createHmac("sha256", this.key).update(data).digest());
    h.init();
    h.update(data);
    return h.digest("binary");
  }

  /**
   * An incremental MAC, fed in several calls that other uses of this Mac may
   * interleave with: it keeps the hasher's state between them (~2 KiB).
   */
  stream(): MacStream {
    const h = this.hasher;
    if (h === null) {
      const hm = createHmac("sha256", this.key);
      return {
        update: (parts) => void parts.forEach((p) => hm.update(p)),
        digest: () => new Uint8Array(hm.digest()),
      };
    }
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
  }

  /** The MAC of the concatenation of `parts` (synchronous: no other caller can interleave). */
  macParts(parts: readonly Uint8Array[]): Uint8Array {
    const h = this.hasher;
    if (h !== null) {
      h.init();
      for (const p of parts) h.update(p);
      return h.digest("binary");
    }
    const hm = createHmac("sha256", this.key);
    for (const p of parts) hm.update(p);
    return new Uint8Array(hm.digest());
  }
}
