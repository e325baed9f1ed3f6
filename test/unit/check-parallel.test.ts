/**
 * check()'s packfile reads (src/snapshot/check.ts) keep the store's
 * parallelism (Store.connections) in flight, within the bytes of packfiles
 * it may hold at once, and two on a store that does not tell.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { MemoryStore } from "../../src/connectors/memory/store.js";
import type { Store } from "../../src/connectors/store.js";
import { BlobType } from "../../src/repository/codec.js";
import { Repository } from "../../src/repository/repository.js";
import { check } from "../../src/snapshot/check.js";
import { CountingStore } from "../helpers/counting-store.js";
import { prng } from "../helpers/prng.js";

const KDF = { memory: 8192, passes: 1, parallelism: 1 };

/** A repository of `packs` packfiles of about `packSize` bytes. */
async function repository(packSize: number, packs: number): Promise<MemoryStore> {
  const mem = new MemoryStore();
  await Repository.create(mem, { passphrase: null, compression: "none", packSize, kdf: KDF });
  const repo = await Repository.open(mem, { passphrase: async () => null });
  for (let i = 0; i < packs; i++) await repo.putBlob(BlobType.CHUNK, prng(i + 1, packSize));
  await repo.flush();
  await repo.close();
  return mem;
}

async function checkThrough(store: Store): Promise<number> {
  const repo = await Repository.open(store, { passphrase: async () => null });
  try {
    const r = await check(repo);
    expect(r.problems).toEqual([]);
    return r.read.packs;
  } finally {
    await repo.close();
  }
}

let small: MemoryStore;
beforeAll(async () => {
  small = await repository(64 << 10, 24);
});

describe("check --read-data parallelism", () => {
  it("reads the store's connections of packfiles at once", async () => {
    const store = new CountingStore(small, { connections: 6 });
    expect(await checkThrough(store)).toBe(24);
    expect(store.reads).toHaveLength(24);
    expect(store.maxInFlight).toBe(6);
  });

  it("reads two at once from a store that does not tell", async () => {
    const store = new CountingStore(small);
    expect(await checkThrough(store)).toBe(24);
    expect(store.maxInFlight).toBe(2);
  });

  it("reads fewer at once when that many packfiles would pass its budget", async () => {
    const big = await repository(32 << 20, 6);
    const store = new CountingStore(big, { connections: 16 });
    expect(await checkThrough(store)).toBe(6);
    expect(store.maxInFlight).toBe(4); // 128 MiB of 32 MiB packfiles
  });
});
