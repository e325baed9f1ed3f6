import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { compareNames, escapeControls, escapeName, fsPath, isRawName, lossyName, nameFromBytes, nameToBytes, unescapeName } from "../../src/util/names.js";

const bytes = fc.uint8Array({ maxLength: 64 });
/** Byte strings rich in the interesting cases: ASCII, backslashes, controls, partial and valid multi-byte sequences. */
const nameBytes = fc
  .array(fc.oneof(fc.constantFrom(0x5c, 0x0a, 0x1b, 0x7f, 0xe9, 0xff, 0x80, 0xc3, 0xa9, 0xed, 0xa0, 0xf0, 0x9f), fc.integer({ min: 0, max: 255 })), { maxLength: 40 })
  .map((a) => Uint8Array.from(a));

describe("names as bytes", () => {
  it("nameToBytes(nameFromBytes(b)) is b for every byte string", () => {
    fc.assert(fc.property(fc.oneof(bytes, nameBytes), (b) => {
      expect(nameToBytes(nameFromBytes(b)).equals(Buffer.from(b))).toBe(true);
    }));
  });

  it("a valid UTF-8 name is the plain string, and is not raw", () => {
    fc.assert(
      fc.property(fc.string({ unit: "grapheme" }), (s) => {
        expect(nameFromBytes(Buffer.from(s, "utf8"))).toBe(s);
        expect(isRawName(s)).toBe(false);
        expect(fsPath(s)).toBe(s);
      }),
    );
  });

  it("escapes each invalid byte, and keeps a real U+FFFD", () => {
    const n = nameFromBytes(Buffer.from("lat\xe9", "latin1"));
    expect(n).toBe("lat\udce9");
    expect(isRawName(n)).toBe(true);
    expect(fsPath(n)).toEqual(Buffer.from([0x6c, 0x61, 0x74, 0xe9]));
    expect(lossyName(n)).toBe("lat\ufffd");
    expect(nameFromBytes(Buffer.from("a\ufffdb", "utf8"))).toBe("a\ufffdb");
    // Surrogates encoded as UTF-8 (CESU) and overlong forms are not valid UTF-8.
    expect(nameFromBytes(Uint8Array.of(0xed, 0xa0, 0x80))).toBe("\udced\udca0\udc80");
    expect(nameFromBytes(Uint8Array.of(0xc0, 0xaf))).toBe("\udcc0\udcaf");
  });

  it("escapeName shows GNU ls -b's form, and unescapeName reads it back", () => {
    expect(escapeName(nameFromBytes(Buffer.from("lat\xe9", "latin1")))).toBe("lat\\351");
    expect(escapeName("a\\b")).toBe("a\\\\b");
    expect(escapeName("line\nfeed\x1b[2J")).toBe("line\\012feed\\033[2J");
    expect(escapeName("café")).toBe("café");
    expect(unescapeName("caf\\303\\251")).toBe("café");
    expect(unescapeName("odd\\q\\")).toBe("odd\\q\\");
    fc.assert(fc.property(fc.oneof(bytes, nameBytes), (b) => {
      const n = nameFromBytes(b);
      expect(nameToBytes(unescapeName(escapeName(n))).equals(Buffer.from(b))).toBe(true);
      // Nothing a terminal acts on is left in the display form.
      // eslint-disable-next-line no-control-regex
      expect(escapeName(n)).not.toMatch(/[\u0000-\u001f\u007f-\u009f\ud800-\udfff]/u); // u: lone surrogates only
    }));
  });

  it("escapeControls makes a message safe without touching its backslashes (an escaped name in it stays as it is)", () => {
    expect(escapeControls("coffer: /a\x1b[31m\nb: cannot read")).toBe("coffer: /a\\033[31m\\012b: cannot read");
    expect(escapeControls("bad\udcffname and lat\\351")).toBe("bad\\377name and lat\\351");
    expect(escapeControls("plain text, café")).toBe("plain text, café");
    fc.assert(fc.property(fc.oneof(bytes, nameBytes), (b) => {
      const n = nameFromBytes(b);
      // eslint-disable-next-line no-control-regex
      expect(escapeControls(n)).not.toMatch(/[\u0000-\u001f\u007f-\u009f\ud800-\udfff]/u);
      expect(escapeControls(escapeName(n))).toBe(escapeName(n));
    }));
  });

  it("compareNames is the byte order", () => {
    fc.assert(
      fc.property(fc.oneof(bytes, nameBytes), fc.oneof(bytes, nameBytes), (a, b) => {
        expect(Math.sign(compareNames(nameFromBytes(a), nameFromBytes(b)))).toBe(Math.sign(Buffer.compare(Buffer.from(a), Buffer.from(b))));
      }),
    );
  });
});
