import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { InFlight, mapLimit } from "../../src/util/concurrency.js";

/** Lets Node's unhandled-rejection check run: it runs after each turn of the event loop. */
const turns = async (n: number) => {
  for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
};

describe("mapLimit", () => {
  it("keeps the order of results and never runs more than the limit at once", async () => {
    let running = 0;
    let most = 0;
    const out = await mapLimit([5, 1, 4, 2, 3], 2, async (x) => {
      most = Math.max(most, ++running);
      await turns(x);
      running--;
      return x * 10;
    });
    expect(out).toEqual([50, 10, 40, 20, 30]);
    expect(most).toBe(2);
  });
});

describe("InFlight", () => {
  const unhandled: unknown[] = [];
  const record = (e: unknown) => unhandled.push(e);
  beforeEach(() => {
    unhandled.length = 0;
    process.on("unhandledRejection", record);
  });
  afterEach(() => {
    process.off("unhandledRejection", record);
  });

  it("waits for the oldest promise once the window is full", async () => {
    const done: number[] = [];
    const w = new InFlight(2);
    let release!: () => void;
    const first = new Promise<void>((r) => (release = r)).then(() => done.push(1));
    await w.add(first);
    let added = false;
    const second = w.add(Promise.resolve().then(() => done.push(2))).then(() => (added = true));
    await turns(2);
    expect(added).toBe(false); // the window is full until the first settles
    release();
    await second;
    expect(added).toBe(true);
    await w.drain();
    expect(done).toEqual([2, 1]);
  });

  it("a promise that fails while the caller awaits something else is not an unhandled rejection", async () => {
    const w = new InFlight(4);
    await w.add(Promise.reject(new Error("disk full")));
    await turns(3); // the caller reads the next chunk meanwhile
    expect(unhandled).toEqual([]);
    await expect(w.drain()).rejects.toThrow("disk full");
  });

  it("the failure reaches the caller at the add() that waits for it", async () => {
    const w = new InFlight(1);
    await expect(w.add(Promise.reject(new Error("put failed")))).rejects.toThrow("put failed");
    await turns(2);
    expect(unhandled).toEqual([]);
  });
});
