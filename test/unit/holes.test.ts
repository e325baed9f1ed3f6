/**
 * Hole detection (src/snapshot/restore/holes.ts): a chunk at some offset of
 * a file is split into data and zero pieces on 64 KiB blocks of the file;
 * only whole zero blocks become holes, and the pieces cover the chunk
 * exactly, in order.
 */
import { describe, expect, it } from "vitest";
import { pieces } from "../../src/snapshot/restore/holes.js";

const K64 = 64 * 1024;
const shape = (data: Uint8Array, offset: number) => [...pieces(data, offset)].map((p) => [p.offset, p.length, p.zero === true ? "zero" : "data"]);

describe("pieces", () => {
  it("gives whole zero blocks as holes and merges runs of the same kind", () => {
    const data = new Uint8Array(4 * K64);
    data[K64 - 1] = 1; // block 0 holds data
    data[3 * K64] = 1; // block 3 holds data
    expect(shape(data, 0)).toEqual([
      [0, K64, "data"],
      [K64, 2 * K64, "zero"],
      [3 * K64, K64, "data"],
    ]);
  });

  it("cuts on blocks of the file, not of the chunk: the partial blocks at either end stay data", () => {
    const data = new Uint8Array(3 * K64); // all zeros, at an offset inside a block
    const at = K64 + 100;
    expect(shape(data, at)).toEqual([
      [at, K64 - 100, "data"],
      [2 * K64, 2 * K64, "zero"],
      [4 * K64, 100, "data"],
    ]);
  });

  it("gives data pieces as views of the chunk, covering it exactly", () => {
    const data = new Uint8Array(2 * K64 + 7).map((_, i) => (i < K64 ? 0 : i % 251));
    const ps = [...pieces(data, 0)];
    expect(ps.reduce((n, p) => n + p.length, 0)).toBe(data.byteLength);
    const last = ps.at(-1)!;
    expect(Buffer.from(last.data!).equals(Buffer.from(data.subarray(K64)))).toBe(true);
    expect(last.data!.buffer).toBe(data.buffer);
  });

  it("gives nothing for an empty chunk", () => {
    expect(shape(new Uint8Array(0), 5)).toEqual([]);
  });
});
