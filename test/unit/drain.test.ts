/**
 * src/util/drain.ts: waiting for 'drain' at every backpressure of a real
 * stream, many more times than the default limit of listeners, leaves no
 * listener behind and emits no warning; an error, a close first or an
 * abort of its signal rejects the wait, and removes its listeners too.
 */
import { getEventListeners } from "node:events";
import { PassThrough } from "node:stream";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { drained } from "../../src/util/drain.js";

const EVENTS = ["drain", "error", "close"] as const;
const counts = (s: PassThrough) => EVENTS.map((e) => s.listenerCount(e));

let warnings: Error[] = [];
const onWarning = (w: Error) => warnings.push(w);
beforeEach(() => {
  warnings = [];
  process.on("warning", onWarning);
});
afterEach(() => {
  process.off("warning", onWarning);
});

/** Lets warnings emitted on the next tick arrive. */
const settleWarnings = () => new Promise<void>((res) => setImmediate(res));

describe("drained", () => {
  it("waits out backpressure 50 times, more than the default 10 listeners, and leaves none behind", async () => {
    const s = new PassThrough({ highWaterMark: 1024 });
    const before = counts(s);
    expect(s.getMaxListeners()).toBeLessThan(50);
    for (let i = 0; i < 50; i++) {
      let writes = 0;
      while (s.write(Buffer.alloc(512))) writes++;
      expect(writes).toBeLessThan(10); // write() returned false: backpressure
      const wait = drained(s, "test stream");
      expect(counts(s)).toEqual(before.map((n) => n + 1));
      setImmediate(() => {
        while (s.read() !== null);
      });
      await wait;
      expect(counts(s)).toEqual(before);
    }
    await settleWarnings();
    expect(warnings.map((w) => `${w.name}: ${w.message}`)).toEqual([]);
  });

  it("rejects on an error or a close that comes first, removing its listeners", async () => {
    const s = new PassThrough({ highWaterMark: 16 });
    const before = counts(s);
    s.write(Buffer.alloc(64));
    const failing = drained(s, "test stream");
    const boom = new Error("boom");
    s.emit("error", boom);
    await expect(failing).rejects.toBe(boom);
    expect(counts(s)).toEqual(before);

    const closing = drained(s, "test stream");
    s.emit("close");
    await expect(closing).rejects.toThrow("test stream closed");
    expect(counts(s)).toEqual(before);
  });

  it("rejects with the reason of its signal, at once when already aborted, and leaves no listener on the signal", async () => {
    const s = new PassThrough({ highWaterMark: 16 });
    const before = counts(s);
    s.write(Buffer.alloc(64));
    const ac = new AbortController();
    const ended = new Error("the archive ended early");
    // Many waits on one signal, each settled by 'drain': the signal keeps no listener of theirs.
    for (let i = 0; i < 20; i++) {
      const wait = drained(s, "test stream", ac.signal);
      s.emit("drain");
      await wait;
    }
    expect(getEventListeners(ac.signal, "abort")).toHaveLength(0);
    const waiting = drained(s, "test stream", ac.signal);
    ac.abort(ended);
    await expect(waiting).rejects.toBe(ended);
    expect(counts(s)).toEqual(before);
    expect(getEventListeners(ac.signal, "abort")).toHaveLength(0);
    await expect(drained(s, "test stream", ac.signal)).rejects.toBe(ended);
    expect(counts(s)).toEqual(before);
    await settleWarnings();
    expect(warnings.map((w) => `${w.name}: ${w.message}`)).toEqual([]);
  });
});
