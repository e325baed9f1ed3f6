/**
 * The fault kit itself (test/helpers/faults.ts): what each decorator logs,
 * fails, cuts, holds or hides, on a MemoryStore and on an FsStore (whose
 * stage() the decorators pass on), and that they compose. That they keep
 * the Store contract otherwise is test/conformance/faults.test.ts.
 */
import { randomBytes } from "node:crypto";
import { promises as fsp } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { Resource } from "../../src/connectors/flags.js";
import { FsStore } from "../../src/connectors/fs/store.js";
import { MemoryStore } from "../../src/connectors/memory/store.js";
import { PtarStore } from "../../src/connectors/ptar/store.js";
import type { Store } from "../../src/connectors/store.js";
import { CofferError, NotFoundError } from "../../src/util/errors.js";
import { toHex } from "../../src/util/hex.js";
import { cutShort, delayed, eventuallyConsistent, failing, faults, gate, recording } from "../helpers/faults.js";

const P = Resource.PACKFILE;
const S = Resource.STATE;
const mac = () => new Uint8Array(randomBytes(32));
const bytes = (n: number) => new Uint8Array(randomBytes(n));

const dirs: string[] = [];
const stores: Store[] = [];
afterEach(async () => {
  await Promise.all(stores.splice(0).map((s) => s.close()));
  await Promise.all(dirs.splice(0).map((d) => fsp.rm(d, { recursive: true, force: true })));
});

async function memory(): Promise<MemoryStore> {
  const m = new MemoryStore();
  await m.create(bytes(10));
  return m;
}

async function fsStore(): Promise<{ root: string; store: FsStore }> {
  const root = await fsp.mkdtemp(path.join(tmpdir(), "coffer-faults-"));
  dirs.push(root);
  const store = new FsStore(root);
  stores.push(store);
  await store.create(bytes(10));
  return { root, store };
}

async function listHex(store: Store, r: Resource): Promise<string[]> {
  const out: string[] = [];
  for await (const m of store.list(r)) out.push(toHex(m));
  return out;
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => expect.unreachable("expected a rejection"),
    (e: unknown) => e,
  );
}

async function* pieces(...ps: Uint8Array[]): AsyncIterable<Uint8Array> {
  for (const p of ps) yield p;
}

/** Files under the fs store's tmp/: what a crashed or failed write leaves. */
const temps = (root: string) => fsp.readdir(path.join(root, "tmp"));

describe("the decorators' shape", () => {
  it("pass stage() and sync() on exactly when the inner store has them, and never localPath()", async () => {
    const mem = await memory();
    const { store: fs } = await fsStore();
    const ptarDir = await fsp.mkdtemp(path.join(tmpdir(), "coffer-faults-ptar-"));
    dirs.push(ptarDir);
    const ptar = new PtarStore(path.join(ptarDir, "a.ptar"));
    const all = [
      (s: Store) => recording(s),
      (s: Store) => failing(s, { times: 0 }),
      (s: Store) => cutShort(s, { nth: Infinity }),
      (s: Store) => delayed(s, undefined),
      (s: Store) => eventuallyConsistent(s),
    ];
    for (const wrap of all) {
      for (const inner of [mem, fs, ptar] as Store[]) {
        const d = wrap(inner);
        expect(d.stage === undefined, `${d.constructor.name} over ${inner.type}: stage`).toBe(inner.stage === undefined);
        expect(d.sync === undefined, `${d.constructor.name} over ${inner.type}: sync`).toBe(inner.sync === undefined);
        expect((d as Store).localPath).toBeUndefined();
        expect([d.type, d.root, d.origin, d.flags]).toEqual([inner.type, inner.root, inner.origin, inner.flags]);
      }
    }
    expect(fs.stage).toBeDefined();
    expect(ptar.sync).toBeDefined();
  });
});

describe("recording", () => {
  it("logs each call's start and end, with resource, MAC, range, bytes and the error of a failure", async () => {
    const rec = recording(await memory());
    const m = mac();
    await rec.put(P, m, bytes(100));
    await rec.get(P, m, { offset: 10, length: 5 });
    expect(await listHex(rec, P)).toEqual([toHex(m)]);
    const missing = mac();
    expect(await rejection(rec.delete(S, missing))).toBeInstanceOf(NotFoundError);
    expect(rec.log.map((l) => `${l.seq}:${l.phase}:${l.op}`)).toEqual(["1:start:put", "1:done:put", "2:start:get", "2:done:get", "3:start:list", "3:done:list", "4:start:delete", "4:failed:delete"]);
    expect(rec.log[0]).toMatchObject({ op: "put", resource: P, mac: toHex(m), bytes: 100 });
    expect(rec.log[2]).toMatchObject({ op: "get", range: { offset: 10, length: 5 } });
    expect(rec.log.at(-1)).toMatchObject({ op: "delete", resource: S, mac: toHex(missing), phase: "failed" });
    expect(rec.log.at(-1)!.error).toBeInstanceOf(NotFoundError);
    expect(rec.entries({ op: "put" })).toHaveLength(1);
    expect(rec.entries({ resource: S }, "failed")).toHaveLength(1);
    rec.clear();
    expect(rec.log).toEqual([]);
  });

  it("logs a staged object as stage, writes (bytes), and commit (MAC) or abort, tied by `staged`", async () => {
    const { store } = await fsStore();
    const rec = recording(store);
    const a = await rec.stage!(P, { direct: false });
    await a.write([bytes(10), bytes(20)]);
    await a.write([bytes(5)]);
    const m = mac();
    expect(await a.commit(m)).toBe(35);
    const b = await rec.stage!(S);
    await b.write([bytes(1)]);
    await b.abort();
    const calls = rec.entries().map((l) => [l.op, l.staged, l.bytes ?? l.mac ?? l.direct ?? null]);
    expect(calls).toEqual([
      ["stage", 1, false],
      ["write", 1, 30],
      ["write", 1, 5],
      ["commit", 1, toHex(m)],
      ["stage", 2, null],
      ["write", 2, 1],
      ["abort", 2, null],
    ]);
    expect(await listHex(store, P)).toEqual([toHex(m)]);
    expect(await listHex(store, S)).toEqual([]);
  });
});

describe("failing", () => {
  it("fails the nth matching call (and `times` of them) with the fault given, before it reaches the store", async () => {
    const mem = await memory();
    const f = failing(mem, { op: "put", resource: S, nth: 2, times: 2, error: faults.noSpace });
    const ms = [mac(), mac(), mac(), mac()];
    await f.put(P, mac(), bytes(1)); // another resource: not counted
    await f.put(S, ms[0]!, bytes(1));
    const e = await rejection(f.put(S, ms[1]!, bytes(1)));
    expect(e).toBeInstanceOf(CofferError);
    expect(e).toMatchObject({ code: "IO", data: { errno: "ENOSPC" } });
    await rejection(f.put(S, ms[2]!, bytes(1)));
    await f.put(S, ms[3]!, bytes(1));
    expect((await listHex(mem, S)).sort()).toEqual([toHex(ms[0]!), toHex(ms[3]!)].sort());
    expect(f.seen).toBe(4);
    expect(f.failed.map((c) => c.mac)).toEqual([toHex(ms[1]!), toHex(ms[2]!)]);

    // A new rule counts afresh; `when` selects by anything in the call.
    const target = mac();
    await mem.put(P, target, bytes(3));
    f.rule = { when: (c) => c.mac === toHex(target), times: Infinity, error: faults.notFound };
    await mem.get(P, target);
    expect(await rejection(f.get(P, target))).toBeInstanceOf(NotFoundError);
    expect(await rejection(f.delete(P, target))).toBeInstanceOf(NotFoundError);
    expect(await listHex(mem, P)).toContain(toHex(target)); // the delete never reached it
  });

  it("with `after`, the store does the call and the caller still sees it fail (a lost reply)", async () => {
    const mem = await memory();
    const f = failing(mem, { op: "put", after: true, error: faults.io });
    const m = mac();
    expect(await rejection(f.put(P, m, bytes(7)))).toMatchObject({ code: "IO", data: { errno: "EIO" } });
    expect((await mem.get(P, m)).byteLength).toBe(7);
  });

  it("fails a staged write or commit without passing it on: after the caller's abort nothing is left", async () => {
    const { root, store } = await fsStore();
    for (const op of ["write", "commit"] as const) {
      const f = failing(store, { op });
      const s = await f.stage!(P);
      const m = mac();
      if (op === "write") expect(await rejection(s.write([bytes(100)]))).toMatchObject({ code: "IO" });
      else {
        await s.write([bytes(100)]);
        expect(await rejection(s.commit(m))).toMatchObject({ code: "IO" });
      }
      expect(await temps(root)).toHaveLength(1); // the inner staged object is the caller's to end
      await s.abort();
      expect(await temps(root)).toEqual([]);
      expect(await listHex(store, P)).toEqual([]);
    }
  });
});

describe("cutShort", () => {
  it("a put of bytes or of a stream reaches an atomic store cut short and fails: the store keeps nothing", async () => {
    const { root, store: fs } = await fsStore();
    for (const inner of [await memory(), fs]) {
      const c = cutShort(inner, { op: "put", resource: P, nth: 2 });
      const first = mac();
      await c.put(P, first, bytes(1000));
      const cut = mac();
      expect(await rejection(c.put(P, cut, bytes(100_000)))).toMatchObject({ code: "IO", data: { errno: "ENOSPC" } });
      const streamed = mac();
      const c2 = cutShort(inner, { keep: 70_000 });
      expect(await rejection(c2.put(P, streamed, pieces(bytes(50_000), bytes(50_000))))).toMatchObject({ code: "IO" });
      expect(c.cut).toHaveLength(1);
      expect(c2.cut).toHaveLength(1);
      expect(await listHex(inner, P)).toEqual([toHex(first)]);
      await expect(inner.get(P, cut)).rejects.toBeInstanceOf(NotFoundError);
    }
    expect(await temps(root)).toEqual([]);
  });

  it("a staged object gets `keep` bytes, then its writes and commit fail; after abort nothing is left", async () => {
    const { root, store } = await fsStore();
    const rec = recording(store);
    const c = cutShort(rec, { keep: 25 });
    const s = await c.stage!(P);
    await s.write([bytes(10), bytes(10)]);
    expect(await rejection(s.write([bytes(10), bytes(10)]))).toMatchObject({ code: "IO", data: { errno: "ENOSPC" } });
    await rejection(s.write([bytes(1)]));
    await rejection(s.commit(mac()));
    expect(rec.entries({ op: "write" }, "done").reduce((n, l) => n + l.bytes!, 0)).toBe(25);
    expect(rec.entries({ op: "commit" })).toEqual([]);
    await s.abort();
    expect(await temps(root)).toEqual([]);
    expect(await listHex(store, P)).toEqual([]);
  });

  it("reports a store that takes a put whose source failed", async () => {
    const sloppy = await memory();
    // A store that is not atomic: it keeps what it got and swallows the source's error.
    const broken: Store = Object.assign(Object.create(sloppy) as MemoryStore, {
      put: async (r: Resource, m: Uint8Array, data: Uint8Array | AsyncIterable<Uint8Array>) => {
        const got: Uint8Array[] = [];
        try {
          for await (const p of data as AsyncIterable<Uint8Array>) got.push(p);
        } catch {
          // kept anyway
        }
        return sloppy.put(r, m, new Uint8Array(Buffer.concat(got)));
      },
    });
    const e = await rejection(cutShort(broken, {}).put(P, mac(), bytes(100)));
    expect((e as Error).message).toMatch(/took a put whose source failed/);
  });
});

describe("delayed", () => {
  it("holds matching calls at a gate until it opens; the others pass", async () => {
    const mem = await memory();
    const g = gate();
    const d = delayed(mem, g, { op: "put", resource: S });
    const m = mac();
    let done = false;
    const p = d.put(S, m, bytes(5)).then(() => (done = true));
    expect(await g.reached).toMatchObject({ op: "put", resource: S, mac: toHex(m) });
    await d.put(P, mac(), bytes(5)); // not held
    await d.get(P, (await toArray(mem.list(P)))[0]!);
    expect(g.waiting).toHaveLength(1);
    expect(done).toBe(false);
    expect(await listHex(mem, S)).toEqual([]); // not in the store yet
    g.open();
    await p;
    expect(await listHex(mem, S)).toEqual([toHex(m)]);
    expect(g.waiting).toHaveLength(0);
    await d.put(S, mac(), bytes(1)); // an open gate lets calls through
  });

  it("with `after`, the store has done the call while its answer is held", async () => {
    const mem = await memory();
    const g = gate();
    const d = delayed(mem, g, { op: "delete", after: true });
    const m = mac();
    await d.put(P, m, bytes(5));
    const p = d.delete(P, m);
    await g.reached;
    expect(await listHex(mem, P)).toEqual([]);
    g.open();
    await p;
  });

  it("a function as the wait runs before each matching call (here: to change the store under it)", async () => {
    const mem = await memory();
    const m = mac();
    await mem.put(P, m, bytes(5));
    const d = delayed(mem, () => mem.delete(P, m), { op: "get" });
    await expect(d.get(P, m)).rejects.toBeInstanceOf(NotFoundError);
  });
});

describe("eventuallyConsistent", () => {
  it("listings leave out what was put since the last settle(); gets see it at once", async () => {
    const mem = await memory();
    const old = mac();
    await mem.put(P, old, bytes(3));
    const ec = eventuallyConsistent(mem);
    const m = mac();
    await ec.put(P, m, bytes(3));
    expect(await listHex(ec, P)).toEqual([toHex(old)]);
    expect((await ec.get(P, m)).byteLength).toBe(3);
    expect(ec.unsettled).toBe(1);
    ec.settle();
    expect((await listHex(ec, P)).sort()).toEqual([toHex(old), toHex(m)].sort());
    // An object put again that was listed already stays listed.
    await ec.put(P, old, bytes(4));
    expect(await listHex(ec, P)).toHaveLength(2);
  });

  it("staged commits are hidden too; deletes can linger in listings", async () => {
    const { store } = await fsStore();
    const ec = eventuallyConsistent(store, { lingeringDeletes: true });
    const s = await ec.stage!(P);
    await s.write([bytes(9)]);
    const m = mac();
    await s.commit(m);
    expect(await listHex(ec, P)).toEqual([]);
    ec.settle();
    expect(await listHex(ec, P)).toEqual([toHex(m)]);
    await ec.delete(P, m);
    expect(await listHex(ec, P)).toEqual([toHex(m)]);
    await expect(ec.get(P, m)).rejects.toBeInstanceOf(NotFoundError);
    ec.settle();
    expect(await listHex(ec, P)).toEqual([]);
  });

  it("shuffles each listing, the same way for the same seed", async () => {
    const mem = await memory();
    for (let i = 0; i < 20; i++) await mem.put(S, mac(), bytes(1));
    const orders = async (seed: number) => {
      const ec = eventuallyConsistent(mem, { seed });
      return [await listHex(ec, S), await listHex(ec, S), await listHex(ec, S)];
    };
    const a = await orders(7);
    expect(await orders(7)).toEqual(a);
    expect(new Set(a.map((o) => o.join())).size).toBe(3); // each listing in another order
    expect(await orders(8)).not.toEqual(a);
    expect([...a[0]!].sort()).toEqual((await listHex(mem, S)).sort());
  });
});

describe("composed", () => {
  it("recording outside failing sees the injected failure; inside it sees only what passed", async () => {
    const mem = await memory();
    const inner = recording(mem);
    const outer = recording(failing(inner, { op: "put", nth: 2 }));
    await outer.put(P, mac(), bytes(1));
    await rejection(outer.put(P, mac(), bytes(1)));
    await outer.put(P, mac(), bytes(1));
    expect(outer.entries({ op: "put" }, "failed")).toHaveLength(1);
    expect(inner.entries({ op: "put" })).toHaveLength(2);
    expect(inner.entries({ op: "put" }, "failed")).toHaveLength(0);
  });
});

async function toArray<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}
