/**
 * The read planner (src/repository/read-plan.ts): blobs sorted by packfile
 * and offset, neighbours merged across gaps up to the limit, reads split at
 * the maximum read size.
 */
import { describe, expect, it } from "vitest";
import { type BlobSpan, planReads } from "../../src/repository/read-plan.js";

const P1 = new Uint8Array(32).fill(1);
const P2 = new Uint8Array(32).fill(2);
const KiB = 1024;
const MiB = 1024 * KiB;

const span = (pack: Uint8Array, offset: number, length: number, item = `${pack[0]}@${offset}`): BlobSpan<string> => ({ pack, offset, length, item });
const shape = (reads: ReturnType<typeof planReads<string>>) => reads.map((r) => ({ pack: r.pack[0], offset: r.offset, length: r.length, items: r.blobs.map((b) => b.item) }));

describe("planReads", () => {
  it("sorts blobs by packfile and offset, and merges contiguous ones into one read per packfile", () => {
    const blobs = [span(P2, 100, 50), span(P1, 300, 100), span(P1, 0, 100), span(P2, 0, 100), span(P1, 100, 200)];
    expect(shape(planReads(blobs))).toEqual([
      { pack: 2, offset: 0, length: 150, items: ["2@0", "2@100"] },
      { pack: 1, offset: 0, length: 400, items: ["1@0", "1@100", "1@300"] },
    ]);
  });

  it("merges across a gap up to maxGap, not beyond it", () => {
    const gap = 1 * MiB;
    const blobs = [span(P1, 0, 10 * KiB), span(P1, 10 * KiB + gap, 10 * KiB), span(P1, 20 * KiB + 2 * gap + 1, 10 * KiB)];
    expect(shape(planReads(blobs, { maxGap: gap, maxRead: 16 * MiB }))).toEqual([
      { pack: 1, offset: 0, length: 20 * KiB + gap, items: ["1@0", `1@${10 * KiB + gap}`] },
      { pack: 1, offset: 20 * KiB + 2 * gap + 1, length: 10 * KiB, items: [`1@${20 * KiB + 2 * gap + 1}`] },
    ]);
  });

  it("splits at maxRead; a blob larger than it is a read of its own", () => {
    const blobs = Array.from({ length: 10 }, (_, i) => span(P1, i * MiB, MiB));
    blobs.push(span(P1, 10 * MiB, 6 * MiB));
    const reads = planReads(blobs, { maxRead: 4 * MiB });
    expect(reads.map((r) => [r.offset / MiB, r.length / MiB])).toEqual([
      [0, 4],
      [4, 4],
      [8, 2],
      [10, 6],
    ]);
    for (const r of reads) for (const b of r.blobs) expect(b.offset >= r.offset && b.offset + b.length <= r.offset + r.length).toBe(true);
  });

  it("gives every blob exactly one read; blobs at the same place share it", () => {
    const blobs = [span(P1, 0, 100, "a"), span(P1, 0, 100, "b"), span(P1, 5000, 100, "c")];
    const reads = planReads(blobs, { maxGap: 0 });
    expect(shape(reads)).toEqual([
      { pack: 1, offset: 0, length: 100, items: ["a", "b"] },
      { pack: 1, offset: 5000, length: 100, items: ["c"] },
    ]);
  });

  it("keeps reads within maxRead over a random layout, each covering its blobs, merging all it may", () => {
    let x = 7;
    const rnd = (n: number) => ((x = (x * 1103515245 + 12345) % 2 ** 31), x % n);
    const blobs: BlobSpan<string>[] = [];
    let off = 0;
    for (let i = 0; i < 500; i++) {
      off += rnd(3) === 0 ? rnd(2 * MiB) : 0;
      const len = 1 + rnd(512 * KiB);
      blobs.push(span(i % 3 === 0 ? P2 : P1, off, len, String(i)));
      off += len;
    }
    const reads = planReads(blobs, { maxRead: 4 * MiB, maxGap: MiB });
    expect(reads.flatMap((r) => r.blobs.map((b) => b.item)).sort()).toEqual(blobs.map((b) => b.item).sort());
    for (const r of reads) {
      expect(r.length).toBeLessThanOrEqual(4 * MiB);
      for (const [i, b] of r.blobs.entries()) {
        expect(b.pack).toBe(r.pack);
        expect(b.offset).toBeGreaterThanOrEqual(r.offset);
        expect(b.offset + b.length).toBeLessThanOrEqual(r.offset + r.length);
        if (i > 0) expect(b.offset).toBeGreaterThanOrEqual(r.blobs[i - 1]!.offset);
      }
    }
    // Greedy and maximal: the next read of a packfile starts beyond the gap, or would not have fitted.
    for (let i = 1; i < reads.length; i++) {
      const [a, b] = [reads[i - 1]!, reads[i]!];
      if (a.pack !== b.pack) continue;
      const end = a.offset + a.length;
      const first = b.blobs[0]!;
      expect(first.offset - end > MiB || Math.max(end, first.offset + first.length) - a.offset > 4 * MiB).toBe(true);
    }
  });
});
