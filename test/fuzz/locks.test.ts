/**
 * Fuzzing locks (src/repository/locks.ts): readLocks() on a LOCK object
 * that is mutated, or forged with the key (any msgpack under a valid
 * seal). A lock it cannot read is reported as unreadable, with why; one it
 * can read has the holder fields `describe()` and the staleness checks use.
 * Nothing throws, and nothing allocates what a forged length claims.
 */
import { encode } from "@msgpack/msgpack";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { Resource } from "../../src/connectors/flags.js";
import { BlobType } from "../../src/repository/codec.js";
import { readLocks } from "../../src/repository/locks.js";
import { arbMsgpackValue, arbMutations, arbValueMutation, boundedAllocation, encodeValue, fuzzParams, MSGPACK_FORGERIES, type Mutation, mutateAll, mutateValue } from "../helpers/fuzz.js";
import { envelopeOf, fixedRepository, seal } from "../helpers/sealed.js";

const { store, repo } = await fixedRepository();
const NAME = new Uint8Array(32).fill(0x1c);

const arbLock = fc.record({
  v: fc.constant(1),
  kind: fc.constantFrom("shared", "exclusive"),
  host: fc.string({ maxLength: 12 }),
  pid: fc.nat(),
  time: fc.maxSafeNat(),
  command: fc.string({ maxLength: 12 }),
});
const arbLockBytes: fc.Arbitrary<Uint8Array> = fc.oneof(
  arbLock.map((l) => encode(l)),
  fc.tuple(arbLock, fc.array(arbValueMutation, { minLength: 1, maxLength: 3 })).map(([l, ms]) => encodeValue(ms.reduce(mutateValue, l))),
  arbMsgpackValue.map(encodeValue),
  fc.tuple(arbLock, arbMutations).map(([l, ms]) => mutateAll(encode(l), ms)),
  fc.constantFrom(...MSGPACK_FORGERIES),
);

describe("a lock in a store (readLocks)", () => {
  it("a mutated or forged lock is read, or reported unreadable with why; never an error", async () => {
    await fc.assert(
      fc.asyncProperty(arbLockBytes, fc.option(arbMutations), async (raw, outer) => {
        const blob = seal(repo.keys, false, BlobType.LOCK, NAME, envelopeOf(raw, "zstd"));
        await store.put(Resource.LOCK, NAME, outer === null ? blob : mutateAll(blob, outer));
        const o = await boundedAllocation(() => readLocks(store, repo.codec));
        if (!o.ok) expect.fail(`readLocks threw ${String(o.error)}`);
        expect(o.value).toHaveLength(1);
        const l = o.value[0]!;
        if (l.info === null) expect(typeof l.damage).toBe("string");
        else {
          expect(["shared", "exclusive"]).toContain(l.info.kind);
          // A pid of 0 or -1 would name a process group to kill(2), and a time of NaN would never go stale.
          expect(typeof l.info.host === "string" && Number.isSafeInteger(l.info.pid) && l.info.pid > 0).toBe(true);
          expect(Number.isSafeInteger(l.info.timeMs) && typeof l.info.command === "string").toBe(true);
        }
      }),
      fuzzParams<[Uint8Array, Mutation[] | null]>({
        weight: 0.5,
        examples: [
          [Uint8Array.of(0xc0), null],
          [Uint8Array.of(0xdd, 0x01, 0xff, 0xff, 0xff), null],
          // Regression: these were taken as live locks (kill(-1, 0) succeeds; NaN is never stale).
          [encode({ v: 1, kind: "exclusive", host: "h", pid: -1, time: 0, command: "" }), null],
          [encode({ v: 1, kind: "exclusive", host: "h", pid: 1, time: NaN, command: "" }), null],
        ],
      }),
    );
  });
});
