/**
 * The Store conformance kit (the rules in src/connectors/store.ts), in the
 * manner of restic's internal/backend/test/suite.go. A store plugin runs it
 * from a few lines of its own test file, with vitest or node:test:
 *
 *   import { afterEach, describe, it } from "vitest"; // or "node:test"
 *   import { storeKit } from "coffer/sdk";
 *   storeKit({ describe, it, afterEach }, "s3", async () => ({ store, readOnly, cleanup }));
 *
 * make() returns a fresh, empty store (no repository created), a way to open
 * a read-only store on the same backing, and a cleanup; every test makes its
 * own. Checks assert on error classes and codes, never on message text.
 */
import { randomBytes } from "node:crypto";
import assert from "node:assert/strict";
import { Resource, resourceName, StoreMode } from "../../connectors/flags.js";
import type { Mac, Store } from "../../connectors/store.js";
import { NotFoundError } from "../../util/errors.js";
import type { ErrorCode } from "../../util/errors.js";
import { equalBytes, toHex } from "../../util/hex.js";
import { DEFAULT_TEST_TIMEOUT_MS, fixtureTests } from "./harness.js";
import type { Harness, KitOptions } from "./harness.js";

export interface StoreFixture {
  /** A fresh store with nothing in it. */
  store: Store;
  /** A read-only store on the same backing as `store`. */
  readOnly: () => Promise<Store>;
  cleanup: () => Promise<void>;
}

export interface StoreKitOptions extends KitOptions {
  /**
   * The store has the optional replaceConfig() (what `coffer key` needs):
   * the kit checks it. Without this the kit checks that it has none, as a
   * plugin's store has none (its protocol has no such call).
   */
  replaceConfig?: boolean | undefined;
  /**
   * The store never replaces an object (an object store writing with
   * `If-None-Match: *`): a put of a MAC already there resolves and keeps the
   * first content, as a MAC names its content. The kit checks that instead
   * of the replacement, but for locks, which every store replaces.
   */
  writeOnce?: boolean | undefined;
  /** The store has the optional stage() (packfiles written as they are made): the kit checks it. */
  stage?: boolean | undefined;
}

const RESOURCES: readonly Resource[] = [Resource.PACKFILE, Resource.STATE, Resource.LOCK];
const MiB = 1024 * 1024;

export function storeKit(h: Harness, name: string, make: () => Promise<StoreFixture>, opts: StoreKitOptions = {}): void {
  h.describe(`Store conformance: ${name}`, () => {
    const test = fixtureTests(h, make, opts.testTimeoutMs ?? DEFAULT_TEST_TIMEOUT_MS);
    const config = bytes(317);
    interface T {
      /** A fresh fixture (no repository created). */
      fresh(): Promise<StoreFixture>;
      /** A fresh fixture whose store holds a repository with `config`. */
      created(): Promise<StoreFixture>;
    }
    const it = (title: string, body: (t: T) => Promise<void>): void =>
      test(title, (fresh) =>
        body({
          fresh,
          async created() {
            const f = await fresh();
            await f.store.create(config);
            return f;
          },
        }),
      );

    h.describe("create and open", () => {
      it("create then open returns the config", async (t) => {
        const { store } = await t.created();
        expectBytes(await store.open(), config);
        expectBytes(await store.open(), config); // open is repeatable
      });

      it("create twice fails with REPOSITORY_EXISTS and keeps the first config", async (t) => {
        const { store } = await t.created();
        await expectCode(store.create(bytes(10)), "REPOSITORY_EXISTS");
        expectBytes(await store.open(), config);
      });

      it("open of an empty store fails with NO_REPOSITORY", async (t) => {
        const { store } = await t.fresh();
        await expectCode(store.open(), "NO_REPOSITORY");
      });

      it("ping resolves and mode reports READ and WRITE", async (t) => {
        const { store } = await t.created();
        await store.ping();
        const mode = await store.mode();
        assert.equal(mode & StoreMode.READ, StoreMode.READ);
        assert.equal(mode & StoreMode.WRITE, StoreMode.WRITE);
        assert.equal(typeof store.type, "string");
        assert.equal(typeof store.root, "string");
        assert.equal(typeof store.origin, "string");
        assert.equal(Number.isInteger(store.flags), true);
      });

      it("a fresh repository lists nothing", async (t) => {
        const { store } = await t.created();
        for (const r of RESOURCES) assert.deepEqual(await listHex(store, r), []);
      });
    });

    h.describe("put and get", () => {
      for (const r of RESOURCES) {
        for (const size of [0, 1, 4093, 5 * MiB + 17]) {
          it(`round-trips ${size} bytes as a ${resourceName(r)}`, async (t) => {
            const { store } = await t.created();
            const m = mac();
            const data = bytes(size);
            assert.equal(await store.put(r, m, data), size);
            expectBytes(await store.get(r, m), data);
          });
        }
      }

      it("put streams an AsyncIterable of many pieces", async (t) => {
        const { store } = await t.created();
        const pieces: Uint8Array[] = [];
        for (let i = 0; i < 700; i++) pieces.push(bytes(i % 7 === 0 ? 0 : (i * 7919) % 9000));
        pieces.push(bytes(2 * MiB));
        const m = mac();
        assert.equal(await store.put(Resource.PACKFILE, m, iterate(pieces)), sum(pieces));
        expectBytes(await store.get(Resource.PACKFILE, m), concat(pieces));
      });

      it("put of an empty AsyncIterable stores 0 bytes", async (t) => {
        const { store } = await t.created();
        const m = mac();
        assert.equal(await store.put(Resource.STATE, m, iterate([])), 0);
        expectBytes(await store.get(Resource.STATE, m), new Uint8Array(0));
      });

      it("stored bytes do not share memory with the caller", async (t) => {
        const { store } = await t.created();
        const m = mac();
        const data = bytes(1000);
        const kept = data.slice();
        await store.put(Resource.PACKFILE, m, data);
        data.fill(0);
        const got = await store.get(Resource.PACKFILE, m);
        expectBytes(got, kept);
        got.fill(1);
        expectBytes(await store.get(Resource.PACKFILE, m), kept);

        // A producer that reuses one buffer for every piece.
        const m2 = mac();
        const shared = new Uint8Array(100);
        const expected: Uint8Array[] = [];
        async function* reuse(): AsyncIterable<Uint8Array> {
          for (let i = 0; i < 20; i++) {
            shared.fill(i);
            expected.push(shared.slice());
            yield shared;
          }
        }
        await store.put(Resource.PACKFILE, m2, reuse());
        expectBytes(await store.get(Resource.PACKFILE, m2), concat(expected));
      });

      it("get of a missing object rejects with NotFoundError", async (t) => {
        const { store } = await t.created();
        await store.put(Resource.PACKFILE, mac(), bytes(10));
        for (const r of RESOURCES) {
          await expectNotFound(store.get(r, mac()));
          await expectNotFound(store.get(r, mac(), { offset: 0, length: 1 }));
        }
      });

      it(opts.writeOnce ? "putting a MAC again keeps one object with the first content, but for locks" : "overwriting a MAC keeps one object with the new content", async (t) => {
        const { store } = await t.created();
        for (const r of RESOURCES) {
          const m = mac();
          const first = bytes(5000);
          await store.put(r, m, first);
          const second = bytes(1234);
          assert.equal(await store.put(r, m, second), second.byteLength);
          // Every store replaces a lock: a holder refreshes it so.
          expectBytes(await store.get(r, m), opts.writeOnce && r !== Resource.LOCK ? first : second);
          assert.deepEqual(await listHex(store, r), [toHex(m)]);
        }
      });

      it("concurrent puts of different MACs all land", async (t) => {
        const { store } = await t.created();
        const objects = Array.from({ length: 64 }, () => ({ m: mac(), data: bytes(1 + Math.floor(Math.random() * 20_000)) }));
        await Promise.all(objects.map((o) => store.put(Resource.PACKFILE, o.m, o.data)));
        for (const o of objects) expectBytes(await store.get(Resource.PACKFILE, o.m), o.data);
        assert.deepEqual(await listHex(store, Resource.PACKFILE), objects.map((o) => toHex(o.m)).sort());
      });

      it("a put whose source throws leaves no object", async (t) => {
        const { store } = await t.created();
        const m = mac();
        const boom = new Error("source failed");
        async function* failing(): AsyncIterable<Uint8Array> {
          yield bytes(64 * 1024);
          yield bytes(64 * 1024);
          throw boom;
        }
        await assert.rejects(store.put(Resource.PACKFILE, m, failing()), (e) => e === boom);
        await expectNotFound(store.get(Resource.PACKFILE, m));
        assert.deepEqual(await listHex(store, Resource.PACKFILE), []);
      });
    });

    h.describe("ranged reads", () => {
      const size = MiB + 123;

      it("reads at the start, middle and end, and zero-length ranges", async (t) => {
        const { store } = await t.created();
        const m = mac();
        const data = bytes(size);
        await store.put(Resource.PACKFILE, m, data);
        const ranges = [
          { offset: 0, length: 1 },
          { offset: 0, length: 4096 },
          { offset: 12_345, length: 100_000 },
          { offset: Math.floor(size / 2), length: 1 },
          { offset: size - 4096, length: 4096 },
          { offset: size - 1, length: 1 },
          { offset: 0, length: size },
          { offset: 0, length: 0 },
          { offset: 777, length: 0 },
          { offset: size, length: 0 },
        ];
        for (const range of ranges) {
          const got = await store.get(Resource.PACKFILE, m, range);
          expectBytes(got, data.subarray(range.offset, range.offset + range.length));
        }
      });

      it("a range past the end rejects with CORRUPT", async (t) => {
        const { store } = await t.created();
        const m = mac();
        await store.put(Resource.STATE, m, bytes(size));
        for (const range of [
          { offset: size - 10, length: 11 },
          { offset: size, length: 1 },
          { offset: size + 1, length: 0 },
          { offset: 0, length: size + 1 },
        ]) {
          await expectCode(store.get(Resource.STATE, m, range), "CORRUPT");
        }
      });

      it("ranges work on every resource and on empty objects", async (t) => {
        const { store } = await t.created();
        for (const r of RESOURCES) {
          const m = mac();
          const data = bytes(300);
          await store.put(r, m, data);
          expectBytes(await store.get(r, m, { offset: 100, length: 50 }), data.subarray(100, 150));
          const empty = mac();
          await store.put(r, empty, new Uint8Array(0));
          expectBytes(await store.get(r, empty, { offset: 0, length: 0 }), new Uint8Array(0));
          await expectCode(store.get(r, empty, { offset: 0, length: 1 }), "CORRUPT");
        }
      });
    });

    h.describe("list and delete", () => {
      it("lists exactly the MACs put, per resource", async (t) => {
        const { store } = await t.created();
        const want: Record<Resource, string[]> = { [Resource.PACKFILE]: [], [Resource.STATE]: [], [Resource.LOCK]: [] };
        const jobs: { r: Resource; m: Mac; data: Uint8Array }[] = [];
        const counts: [Resource, number][] = [
          [Resource.PACKFILE, 300],
          [Resource.STATE, 40],
          [Resource.LOCK, 7],
        ];
        for (const [r, n] of counts) {
          for (let i = 0; i < n; i++) jobs.push({ r, m: mac(), data: bytes(i % 50) });
        }
        // The same MAC under every resource, with different content each.
        const sharedMac = mac();
        for (const r of RESOURCES) jobs.push({ r, m: sharedMac, data: bytes(10 + r) });
        await eachLimit(jobs, 16, async (j) => {
          await store.put(j.r, j.m, j.data);
        });
        for (const j of jobs) want[j.r].push(toHex(j.m));

        for (const r of RESOURCES) {
          const got = await listHex(store, r);
          assert.deepEqual(got, [...want[r]].sort());
          for (const m of got) assert.match(m, /^[0-9a-f]{64}$/);
        }
        for (const j of jobs.filter((x) => x.m === sharedMac)) expectBytes(await store.get(j.r, sharedMac), j.data);
      });

      it("a listing can be stopped early", async (t) => {
        const { store } = await t.created();
        for (let i = 0; i < 10; i++) await store.put(Resource.PACKFILE, mac(), bytes(3));
        let seen = 0;
        for await (const m of store.list(Resource.PACKFILE)) {
          assert.equal(m.byteLength, 32);
          if (++seen === 3) break;
        }
        assert.equal(seen, 3);
        assert.equal((await listHex(store, Resource.PACKFILE)).length, 10);
      });

      it("delete removes only that object", async (t) => {
        const { store } = await t.created();
        const a = mac();
        const b = mac();
        const dataB = bytes(20);
        await store.put(Resource.PACKFILE, a, bytes(10));
        await store.put(Resource.PACKFILE, b, dataB);
        await store.put(Resource.STATE, a, bytes(10));
        await store.delete(Resource.PACKFILE, a);
        await expectNotFound(store.get(Resource.PACKFILE, a));
        assert.deepEqual(await listHex(store, Resource.PACKFILE), [toHex(b)]);
        expectBytes(await store.get(Resource.PACKFILE, b), dataB);
        assert.deepEqual(await listHex(store, Resource.STATE), [toHex(a)]);
        // The MAC can be put again after a delete.
        const again = bytes(5);
        await store.put(Resource.PACKFILE, a, again);
        expectBytes(await store.get(Resource.PACKFILE, a), again);
      });

      it("delete of a missing object rejects with NotFoundError", async (t) => {
        const { store } = await t.created();
        for (const r of RESOURCES) await expectNotFound(store.delete(r, mac()));
        const m = mac();
        await store.put(Resource.LOCK, m, bytes(1));
        await store.delete(Resource.LOCK, m);
        await expectNotFound(store.delete(Resource.LOCK, m));
      });

      it("size() grows after puts and shrinks after deletes", async (t) => {
        const { store } = await t.created();
        const s0 = await store.size();
        const m = mac();
        await store.put(Resource.PACKFILE, m, bytes(100_000));
        const s1 = await store.size();
        if (s0 === -1) {
          assert.equal(s1, -1); // unknown stays unknown
          return;
        }
        assert.ok(s0 >= 0, `size() ${s0} should be >= 0`);
        assert.ok(s1 >= s0 + 100_000, `size() ${s1} should be >= ${s0} + 100000 after a put`);
        await store.delete(Resource.PACKFILE, m);
        const s2 = await store.size();
        assert.ok(s2 < s1, `size() ${s2} should be < ${s1} after a delete`);
      });
    });

    h.describe("read-only", () => {
      it("reads and lists, but refuses put and delete and changes nothing", async (t) => {
        const f = await t.created();
        const { store } = f;
        const objects = RESOURCES.map((r) => ({ r, m: mac(), data: bytes(1000 * r) }));
        for (const o of objects) await store.put(o.r, o.m, o.data);
        const sizeBefore = await store.size();

        const ro = await f.readOnly();
        const mode = await ro.mode();
        assert.equal(mode & StoreMode.WRITE, 0);
        assert.equal(mode & StoreMode.READ, StoreMode.READ);
        expectBytes(await ro.open(), config);
        for (const o of objects) {
          assert.deepEqual(await listHex(ro, o.r), [toHex(o.m)]);
          expectBytes(await ro.get(o.r, o.m), o.data);
          expectBytes(await ro.get(o.r, o.m, { offset: 1, length: 10 }), o.data.subarray(1, 11));
        }

        let pulled = false;
        async function* source(): AsyncIterable<Uint8Array> {
          pulled = true;
          yield bytes(10);
        }
        for (const o of objects) {
          await expectCode(ro.put(o.r, mac(), bytes(10)), "READ_ONLY");
          await expectCode(ro.put(o.r, o.m, bytes(10)), "READ_ONLY");
          await expectCode(ro.put(o.r, mac(), source()), "READ_ONLY");
          await expectCode(ro.delete(o.r, o.m), "READ_ONLY");
          await expectCode(ro.delete(o.r, mac()), "READ_ONLY");
        }
        assert.equal(pulled, false);
        await expectCode(ro.create(bytes(5)), "READ_ONLY", "REPOSITORY_EXISTS");

        expectBytes(await store.open(), config);
        for (const o of objects) {
          assert.deepEqual(await listHex(store, o.r), [toHex(o.m)]);
          expectBytes(await store.get(o.r, o.m), o.data);
        }
        assert.equal(await store.size(), sizeBefore);
      });

      it("create on a read-only store rejects with READ_ONLY and creates nothing", async (t) => {
        const f = await t.fresh();
        const ro = await f.readOnly();
        await expectCode(ro.create(config), "READ_ONLY");
        await expectCode(f.store.open(), "NO_REPOSITORY");
      });
    });

    h.describe("abort", () => {
      it("every call rejects with INTERRUPTED once the signal is aborted", async (t) => {
        const { store } = await t.created();
        const m = mac();
        await store.put(Resource.PACKFILE, m, bytes(100));
        const ac = new AbortController();
        ac.abort();
        const opts = { signal: ac.signal };
        await expectCode(store.open(opts), "INTERRUPTED");
        await expectCode(store.ping(opts), "INTERRUPTED");
        await expectCode(store.mode(opts), "INTERRUPTED");
        await expectCode(store.size(opts), "INTERRUPTED");
        await expectCode(listHex(store, Resource.PACKFILE, opts), "INTERRUPTED");
        await expectCode(store.get(Resource.PACKFILE, m, undefined, opts), "INTERRUPTED");
        await expectCode(store.get(Resource.PACKFILE, m, { offset: 0, length: 10 }, opts), "INTERRUPTED");
        const fresh = mac();
        await expectCode(store.put(Resource.PACKFILE, fresh, bytes(100), opts), "INTERRUPTED");
        await expectCode(store.put(Resource.PACKFILE, fresh, iterate([bytes(100)]), opts), "INTERRUPTED");
        await expectCode(store.delete(Resource.PACKFILE, m, opts), "INTERRUPTED");
        await expectCode(store.create(config, opts), "INTERRUPTED");
        // Nothing happened.
        assert.deepEqual(await listHex(store, Resource.PACKFILE), [toHex(m)]);
        await expectNotFound(store.get(Resource.PACKFILE, fresh));
      });

      it("create with an aborted signal leaves no repository", async (t) => {
        const { store } = await t.fresh();
        const ac = new AbortController();
        ac.abort();
        await expectCode(store.create(config, { signal: ac.signal }), "INTERRUPTED");
        await expectCode(store.open(), "NO_REPOSITORY");
      });

      it("an abort during a streamed put leaves no object", async (t) => {
        const { store } = await t.created();
        const ac = new AbortController();
        async function* source(): AsyncIterable<Uint8Array> {
          for (let i = 0; i < 10; i++) {
            if (i === 4) ac.abort();
            yield bytes(32 * 1024);
          }
        }
        const m = mac();
        await expectCode(store.put(Resource.PACKFILE, m, source(), { signal: ac.signal }), "INTERRUPTED");
        await expectNotFound(store.get(Resource.PACKFILE, m));
        assert.deepEqual(await listHex(store, Resource.PACKFILE), []);
      });

      it("an abort during a listing stops it with INTERRUPTED", async (t) => {
        const { store } = await t.created();
        for (let i = 0; i < 10; i++) await store.put(Resource.STATE, mac(), bytes(1));
        const ac = new AbortController();
        const walk = async () => {
          let n = 0;
          for await (const _ of store.list(Resource.STATE, { signal: ac.signal })) {
            if (++n === 2) ac.abort();
          }
          return n;
        };
        await expectCode(walk(), "INTERRUPTED");
      });
    });

    if (opts.stage) h.describe("stage", () => {
      const stager = (store: Store) => {
        assert.equal(typeof store.stage, "function", "the store has no stage (see StoreKitOptions.stage)");
        return store.stage!.bind(store);
      };

      it("staged parts become the object only at commit, which returns their size", async (t) => {
        const { store } = await t.created();
        const stage = stager(store);
        const m = mac();
        const parts = [bytes(1000), bytes(0), bytes(70_000), bytes(3)];
        const staged = await stage(Resource.PACKFILE);
        await staged.write(parts.slice(0, 2));
        await staged.write(parts.slice(2));
        assert.deepEqual(await listHex(store, Resource.PACKFILE), [], "a staged object was listed before its commit");
        await expectNotFound(store.get(Resource.PACKFILE, m));
        assert.equal(await staged.commit(m), 71_003);
        expectBytes(await store.get(Resource.PACKFILE, m), concat(parts));
        assert.deepEqual(await listHex(store, Resource.PACKFILE), [toHex(m)]);
      });

      it("a part changed once write() resolved leaves the object as written", async (t) => {
        const { store } = await t.created();
        const stage = stager(store);
        const part = bytes(4096);
        const kept = new Uint8Array(part);
        const staged = await stage(Resource.STATE);
        await staged.write([part]);
        part.fill(0);
        const m = mac();
        await staged.commit(m);
        expectBytes(await store.get(Resource.STATE, m), kept);
      });

      it("abort leaves nothing; writes and commits after the end are refused", async (t) => {
        const { store } = await t.created();
        const stage = stager(store);
        const dropped = await stage(Resource.PACKFILE);
        await dropped.write([bytes(500)]);
        await dropped.abort();
        await dropped.abort(); // abort is idempotent
        await assert.rejects(dropped.commit(mac()));
        assert.deepEqual(await listHex(store, Resource.PACKFILE), []);
        const done = await stage(Resource.PACKFILE);
        await done.write([bytes(10)]);
        await done.commit(mac());
        await assert.rejects(done.write([bytes(10)]));
        await done.abort(); // no-op after commit
        assert.equal((await listHex(store, Resource.PACKFILE)).length, 1);
      });

      it("refuses with READ_ONLY on a read-only store", async (t) => {
        const { readOnly } = await t.created();
        const ro = await readOnly();
        await expectCode(stager(ro)(Resource.PACKFILE), "READ_ONLY");
      });
    });

    if (opts.replaceConfig) {
      h.describe("replaceConfig", () => {
        const replacer = (store: Store) => {
          assert.equal(typeof store.replaceConfig, "function", "the store has no replaceConfig (see StoreKitOptions.replaceConfig)");
          return store.replaceConfig!.bind(store);
        };

        it("replaces the configuration it is told it replaces, and keeps every object", async (t) => {
          const { store, readOnly } = await t.created();
          const m = mac();
          const data = bytes(4093);
          await store.put(Resource.PACKFILE, m, data);
          const next = bytes(530);
          await replacer(store)(next, config);
          expectBytes(await store.open(), next);
          const third = bytes(12);
          await replacer(store)(third, next);
          expectBytes(await store.open(), third);
          const ro = await readOnly();
          expectBytes(await ro.open(), third);
          expectBytes(await ro.get(Resource.PACKFILE, m), data);
          expectBytes(await store.get(Resource.PACKFILE, m), data);
        });

        it("refuses with LOCKED, replacing nothing, when the configuration is not `expected`", async (t) => {
          const { store, readOnly } = await t.created();
          const replace = replacer(store);
          await expectCode(replace(bytes(40), bytes(config.byteLength)), "LOCKED");
          expectBytes(await store.open(), config);
          const next = bytes(64);
          await replace(next, config);
          // `config` is stale now: a second writer that read it must not win.
          await expectCode(replace(bytes(80), config), "LOCKED");
          expectBytes(await store.open(), next);
          expectBytes(await (await readOnly()).open(), next);
        });

        it("two replacements of the same configuration: exactly one wins, the other is LOCKED", async (t) => {
          const { store } = await t.created();
          const replace = replacer(store);
          const candidates = [bytes(100), bytes(101)];
          const results = await Promise.allSettled(candidates.map((c) => replace(c, config)));
          const won = results.flatMap((r, i) => (r.status === "fulfilled" ? [candidates[i]!] : []));
          assert.equal(won.length, 1);
          for (const r of results) if (r.status === "rejected") assert.equal((r.reason as { code?: unknown }).code, "LOCKED");
          expectBytes(await store.open(), won[0]!);
        });

        it("a reader sees the old configuration or the new one, never anything else", async (t) => {
          const { store, readOnly } = await t.created();
          const ro = await readOnly();
          const next = bytes(2 * MiB);
          const replacing = replacer(store)(next, config);
          for (let i = 0; i < 20; i++) {
            const seen = await ro.open();
            assert.ok(equalBytes(seen, config) || equalBytes(seen, next), "a reader saw neither the old configuration nor the new one");
          }
          await replacing;
          expectBytes(await (await readOnly()).open(), next);
        });

        it("refuses with READ_ONLY on a read-only store, with NO_REPOSITORY where there is none, and INTERRUPTED once aborted", async (t) => {
          const { store, readOnly } = await t.created();
          const ro = await readOnly();
          if (ro.replaceConfig !== undefined) await expectCode(ro.replaceConfig(bytes(9), config), "READ_ONLY");
          const ac = new AbortController();
          ac.abort();
          await expectCode(replacer(store)(bytes(9), config, { signal: ac.signal }), "INTERRUPTED");
          expectBytes(await store.open(), config);
          expectBytes(await (await readOnly()).open(), config);
          const empty = (await t.fresh()).store;
          await expectCode(replacer(empty)(bytes(9), config), "NO_REPOSITORY");
          await expectCode(empty.open(), "NO_REPOSITORY");
        });
      });
    } else {
      it("has no replaceConfig (a store that has one says so: StoreKitOptions.replaceConfig)", async (t) => {
        const { store } = await t.created();
        assert.equal(store.replaceConfig, undefined);
      });
    }

    it("close resolves", async (t) => {
      const { store } = await t.created();
      await store.close();
    });
  });
}

// --- helpers ---

function bytes(n: number): Uint8Array {
  const b = randomBytes(n);
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

function mac(): Mac {
  return bytes(32);
}

async function* iterate(pieces: readonly Uint8Array[]): AsyncIterable<Uint8Array> {
  for (const p of pieces) {
    await Promise.resolve();
    yield p;
  }
}

function sum(pieces: readonly Uint8Array[]): number {
  return pieces.reduce((n, p) => n + p.byteLength, 0);
}

function concat(pieces: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(sum(pieces));
  let at = 0;
  for (const p of pieces) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}

/** The hex MACs of a resource, sorted; fails on duplicates. */
async function listHex(store: Store, r: Resource, opts?: { signal: AbortSignal }): Promise<string[]> {
  const out: string[] = [];
  for await (const m of store.list(r, opts)) out.push(toHex(m));
  out.sort();
  assert.equal(new Set(out).size, out.length);
  return out;
}

function expectBytes(actual: Uint8Array, expected: Uint8Array): void {
  assert.ok(actual instanceof Uint8Array, "expected a Uint8Array");
  assert.equal(actual.byteLength, expected.byteLength);
  if (!equalBytes(actual, expected)) assert.fail(`bytes differ (${actual.byteLength} bytes)`);
}

async function expectCode(p: Promise<unknown>, ...codes: ErrorCode[]): Promise<void> {
  const e: unknown = await p.then(
    () => assert.fail(`expected a rejection with code ${codes.join(" or ")}`),
    (err: unknown) => err,
  );
  const code = (e as { code?: unknown } | null)?.code;
  assert.ok((codes as unknown[]).includes(code), `expected code ${codes.join(" or ")}, got ${String(code)} (${String(e)})`);
}

async function expectNotFound(p: Promise<unknown>): Promise<void> {
  const e: unknown = await p.then(
    () => assert.fail("expected a NotFoundError"),
    (err: unknown) => err,
  );
  assert.ok(e instanceof NotFoundError, "expected a NotFoundError");
  assert.equal((e as NotFoundError).code, "NOT_FOUND");
}

async function eachLimit<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) await fn(items[next++] as T);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}
