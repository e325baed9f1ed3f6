/**
 * Rings of shared memory that worker threads lend buffers from
 * (src/util/ring.ts). The property that matters: a buffer is never handed
 * out again, in whole or in part, while an earlier one it overlaps is still
 * lent, whatever the order buffers are given back in; and a full ring says
 * so (null) instead of waiting or overlapping.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { copyInto, giveBack, isLent, lend, ownBytes, RingReceiver, RingWriter } from "../../src/util/ring.js";

function pair(size: number): { w: RingWriter; r: RingReceiver } {
  const given = new SharedArrayBuffer(4);
  return { w: new RingWriter(size, given), r: new RingReceiver(given) };
}

describe("RingWriter / RingReceiver", () => {
  it("hands out consecutive views of one shared buffer, and null once the rest does not fit", () => {
    const { w } = pair(100);
    const a = w.alloc(40)!;
    const s0 = w.lastSeq;
    const b = w.alloc(40)!;
    expect(a.buffer).toBeInstanceOf(SharedArrayBuffer);
    expect(b.buffer).toBe(a.buffer);
    expect([a.byteOffset, a.byteLength, b.byteOffset, b.byteLength]).toEqual([0, 40, 40, 40]);
    expect(w.lastSeq).toBe(s0 + 1);
    expect(w.owns(a)).toBe(true);
    expect(w.owns(Buffer.alloc(4))).toBe(false);
    expect(w.alloc(21)).toBeNull();
    expect(w.alloc(20)!.byteOffset).toBe(80);
    expect(w.alloc(1)).toBeNull();
    expect(w.alloc(0)).toBeNull();
    expect(pair(10).w.alloc(11)).toBeNull();
  });

  it("reuses space only once every buffer before it is given back, in any order", () => {
    const { w, r } = pair(100);
    const seqs: number[] = [];
    for (let i = 0; i < 4; i++) {
      w.alloc(25);
      seqs.push(w.lastSeq);
    }
    expect(w.alloc(1)).toBeNull();
    r.giveBack(seqs[1]!); // early: the first is still lent
    r.giveBack(seqs[2]!);
    expect(w.alloc(1)).toBeNull();
    r.giveBack(seqs[0]!); // now the first three are back
    const c = w.alloc(75)!;
    expect(c.byteOffset).toBe(0); // wrapped to the start, before the fourth
    expect(w.alloc(1)).toBeNull();
    r.giveBack(seqs[3]!);
    expect(w.alloc(25)!.byteOffset).toBe(75); // after c, which is still lent
  });

  it("wraps to the start when the end has too little room, leaving the end unused", () => {
    const { w, r } = pair(100);
    w.alloc(60);
    const s1 = w.lastSeq;
    w.alloc(30);
    r.giveBack(s1);
    const c = w.alloc(50)!; // does not fit in the last 10 bytes: goes to 0..50 (the second is at 60..90)
    expect(c.byteOffset).toBe(0);
    expect(w.alloc(11)).toBeNull(); // 50..60 is free, but only 10 bytes
    expect(w.alloc(10)!.byteOffset).toBe(50);
  });

  it("idle() lets go of a ring unused since the last call; the next one is reused only after the old one's buffers are back", () => {
    const { w, r } = pair(100);
    const a = w.alloc(60)!;
    const s0 = w.lastSeq;
    w.idle(); // used since the last call: kept
    expect(w.alloc(10)!.buffer).toBe(a.buffer);
    const s1 = w.lastSeq;
    w.idle();
    w.idle(); // nothing allocated in between: let go
    const b = w.alloc(90)!; // a new ring, empty
    expect(b.buffer).not.toBe(a.buffer);
    expect(b.byteOffset).toBe(0);
    const s2 = w.lastSeq;
    r.giveBack(s2); // early: the old ring's two buffers are still lent
    expect(w.alloc(20)).toBeNull();
    r.giveBack(s0);
    r.giveBack(s1);
    expect(w.alloc(100)!.buffer).toBe(b.buffer);
  });

  it("undo() takes back the last allocation", () => {
    const { w } = pair(100);
    w.alloc(30);
    const count = w.count;
    const seq = w.lastSeq;
    w.alloc(50);
    w.undo();
    expect(w.count).toBe(count);
    const again = w.alloc(70)!;
    expect(again.byteOffset).toBe(30);
    expect(w.lastSeq).toBe(seq + 1);
  });

  it("never hands out bytes of a buffer still lent (random sizes, random order of giving back)", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 16, max: 4096 }),
        fc.array(fc.record({ size: fc.integer({ min: 1, max: 1500 }), back: fc.nat({ max: 6 }) }), { minLength: 1, maxLength: 300 }),
        (size, steps) => {
          const { w, r } = pair(size);
          const lent = new Map<number, { view: Buffer; mark: number }>();
          let mark = 0;
          const checkAndGiveBack = (seq: number) => {
            const l = lent.get(seq)!;
            expect(l.view.every((b) => b === l.mark)).toBe(true); // nothing wrote over it while lent
            lent.delete(seq);
            r.giveBack(seq);
          };
          for (const step of steps) {
            const v = w.alloc(step.size);
            if (v) {
              mark = (mark % 251) + 1;
              v.fill(mark);
              lent.set(w.lastSeq, { view: v, mark });
            } else if (lent.size === 0) {
              expect(step.size).toBeGreaterThan(size); // an empty ring takes anything that fits in it
            }
            // give back a few of the lent buffers, picked out of order
            const keys = [...lent.keys()];
            for (let i = 0; i < step.back && keys.length > 0; i++) checkAndGiveBack(keys.splice((i * 7919) % keys.length, 1)[0]!);
          }
          for (const seq of [...lent.keys()].reverse()) checkAndGiveBack(seq);
          // all back: the whole ring is free again
          expect(w.alloc(size)?.byteLength).toBe(size);
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe("lend / giveBack / ownBytes", () => {
  it("calls a lent view's giver once, ignores views not lent, and copies lent bytes it is asked to own", () => {
    const backs: string[] = [];
    const a = new Uint8Array([1, 2, 3]);
    const b = new Uint8Array([4, 5]);
    lend(a, () => backs.push("a"));
    lend(b, () => backs.push("b"));
    expect(isLent(a)).toBe(true);
    giveBack(a);
    giveBack(a);
    giveBack(new Uint8Array(1));
    expect(backs).toEqual(["a"]);
    expect(isLent(a)).toBe(false);

    const own = ownBytes(b);
    expect(own).not.toBe(b);
    expect([...own]).toEqual([4, 5]);
    expect(own.buffer).not.toBe(b.buffer);
    expect(backs).toEqual(["a", "b"]);
    const plain = new Uint8Array([9]);
    expect(ownBytes(plain)).toBe(plain);
  });
});

describe("copyInto", () => {
  it("copies exactly src into dst at any offset, shared memory or not, touching nothing else (property)", () => {
    fc.assert(
      fc.property(fc.boolean(), fc.uint8Array({ maxLength: 300 }), fc.nat(64), fc.nat(16), (shared, bytes, at, srcOffset) => {
        const size = at + bytes.length + 8;
        const dst = shared ? Buffer.from(new SharedArrayBuffer(size)) : Buffer.alloc(size);
        dst.fill(0xee);
        const holder = new Uint8Array(srcOffset + bytes.length);
        holder.set(bytes, srcOffset);
        const src = holder.subarray(srcOffset); // a view at any alignment
        expect(copyInto(dst, at, src)).toBe(bytes.length);
        expect(Buffer.from(dst.subarray(at, at + bytes.length)).equals(Buffer.from(bytes))).toBe(true);
        expect(dst.subarray(0, at).every((b) => b === 0xee)).toBe(true);
        expect(dst.subarray(at + bytes.length).every((b) => b === 0xee)).toBe(true);
      }),
    );
  });

  it("ownBytes copies a view lent from a ring (shared memory) into memory of its own and gives the view back", () => {
    const { w } = pair(64);
    const view = w.alloc(10)!;
    view.fill(7);
    let back = 0;
    lend(view, () => back++);
    const own = ownBytes(view);
    expect(own.buffer).not.toBe(view.buffer);
    expect(own.buffer).not.toBeInstanceOf(SharedArrayBuffer);
    expect([...own]).toEqual(new Array(10).fill(7));
    expect(back).toBe(1);
    expect(isLent(view)).toBe(false);
  });
});
