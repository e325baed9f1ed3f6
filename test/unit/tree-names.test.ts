import { decode } from "@msgpack/msgpack";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { decodeTree, type Entry, encodeTree, encodeTreeOf, packEntry } from "../../src/snapshot/tree.js";
import { nameFromBytes, nameToBytes } from "../../src/util/names.js";

const entry = (name: string, extra: Partial<Entry> = {}): Entry => ({
  name,
  info: { name, kind: "symlink", size: 0, mode: 0o777, mtimeNs: 0n, dev: 1n, ino: 2n, uid: 0, gid: 0, nlink: 1 },
  ...extra,
});

describe("names in trees", () => {
  it("stores a valid UTF-8 name as str and any other as bin of its bytes", () => {
    const raw = nameFromBytes(Buffer.from("lat\xe9", "latin1"));
    const tree = decode(encodeTree([entry("café", { target: "t" }), entry(raw, { target: raw, xattrs: [{ name: raw, value: Uint8Array.of(1) }] })])) as {
      e: Record<string, unknown>[];
    };
    expect(tree.e[0]!.n).toBe("café");
    expect(tree.e[0]!.L).toBe("t");
    expect(tree.e[1]!.n).toEqual(Uint8Array.from(Buffer.from("lat\xe9", "latin1")));
    expect(tree.e[1]!.L).toEqual(Uint8Array.from(Buffer.from("lat\xe9", "latin1")));
    expect((tree.e[1]!.x as unknown[][])[0]![0]).toEqual(Uint8Array.from(Buffer.from("lat\xe9", "latin1")));
  });

  it("round-trips every byte string as name, target and xattr name", () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 40 }), fc.uint8Array({ maxLength: 40 }), (nameBytes, targetBytes) => {
        const name = nameFromBytes(nameBytes);
        const target = nameFromBytes(targetBytes);
        const e = entry(name, { target, xattrs: [{ name: target, value: nameBytes }] });
        for (const bytes of [encodeTree([e]), encodeTreeOf([packEntry(e)])]) {
          const [d] = decodeTree(bytes, "test");
          expect(nameToBytes(d!.name)).toEqual(Buffer.from(nameBytes));
          expect(nameToBytes(d!.info.name)).toEqual(Buffer.from(nameBytes));
          expect(nameToBytes(d!.target!)).toEqual(Buffer.from(targetBytes));
          expect(nameToBytes(d!.xattrs![0]!.name)).toEqual(Buffer.from(targetBytes));
        }
      }),
    );
  });

  it("refuses a name that is neither str nor bin", () => {
    const bad = encodeTree([entry("x")]);
    // Replace the fixstr "x" (0xa1 0x78) after key "n" by the integer 7.
    const at = Buffer.from(bad).indexOf(Buffer.from([0xa1, 0x6e, 0xa1, 0x78]));
    const forged = Uint8Array.from([...bad.subarray(0, at + 2), 0x07, ...bad.subarray(at + 4)]);
    expect(() => decodeTree(forged, "tree x")).toThrow(/bad entry field name/);
  });
});
