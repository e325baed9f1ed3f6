/**
 * Large files (from 32 MiB on) take another path through the backup: the
 * reading worker sends raw chunks, the main thread deduplicates them and has
 * them encoded by another worker (or the reader encodes some itself when the
 * others are behind). This checks that path end to end with the built CLI:
 * content round trip, `cat`, `check`, that a changed copy of a large file
 * stores only the chunks around the change, and that the workers' reads
 * (whole, in pieces, large) cut exactly where the streaming chunker of other
 * sources cuts (the same content from stdin adds no chunk). Large files are
 * read with O_DIRECT where the file system allows it (a size that is not a
 * multiple of its 4 KiB alignment included), and their chunks lent from the
 * workers' shared rings (src/util/ring.ts).
 */
import { createCipheriv, createHash } from "node:crypto";
import { promises as fsp } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EXIT, expectExit, FAST_KDF, parseJson } from "../helpers/cli.js";
import { cofferInProcess } from "../helpers/in-process.js";

const PASS = "large file test";
let base = "";

function env() {
  return { HOME: base, TMPDIR: base, COFFER_PASSPHRASE: PASS };
}

async function ok(args: string[], input?: Buffer) {
  return expectExit(await cofferInProcess(args, { env: env(), cwd: base, timeoutMs: 120_000, ...(input ? { input } : {}) }), EXIT.OK);
}

/** 48 MiB: 24 MiB of compressible text, then 24 MiB of seeded random bytes. */
function bigContent(): Buffer {
  const text = Buffer.alloc(24 << 20);
  const line = Buffer.from("2026-11-22T01:40:00Z INFO request served in 12 ms by worker 7\n");
  for (let i = 0; i < text.byteLength; i += line.byteLength) line.copy(text, i);
  const c = createCipheriv("aes-256-ctr", Buffer.alloc(32, 7), Buffer.alloc(16, 0));
  return Buffer.concat([text, c.update(Buffer.alloc(24 << 20))]);
}

beforeAll(async () => {
  base = await fsp.mkdtemp(path.join(tmpdir(), "coffer-large-"));
});

afterAll(async () => {
  await fsp.rm(base, { recursive: true, force: true });
});

describe("a file larger than 32 MiB", () => {
  it("round-trips, and a changed copy adds only the chunks around the change", async () => {
    const repo = path.join(base, "repo");
    const src = path.join(base, "src");
    await fsp.mkdir(src);
    const data = bigContent();
    await fsp.writeFile(path.join(src, "big.bin"), data);
    await ok(["at", repo, "create", ...FAST_KDF]);
    const first = parseJson<{ id: string; bytes: number; newBytes: number }>(await ok(["at", repo, "backup", "--json", src]));
    expect(first.bytes).toBe(data.byteLength);

    const cat = await ok(["at", repo, "cat", `${first.id.slice(0, 8)}:/big.bin`]);
    expect(cat.stdoutBytes.equals(data)).toBe(true);
    const out = path.join(base, "out");
    await ok(["at", repo, "restore", "--to", out, first.id.slice(0, 8)]);
    expect((await fsp.readFile(path.join(out, "big.bin"))).equals(data)).toBe(true);

    // A copy with 100 bytes changed in the middle: most chunks are known.
    const changed = Buffer.from(data);
    changed.fill(0x41, 30 << 20, (30 << 20) + 100);
    const src2 = path.join(base, "src2");
    await fsp.mkdir(src2);
    await fsp.writeFile(path.join(src2, "big.bin"), changed);
    const second = parseJson<{ id: string; newBytes: number }>(await ok(["at", repo, "backup", "--json", src2]));
    expect(second.newBytes).toBeGreaterThan(0);
    expect(second.newBytes).toBeLessThan(20 << 20);
    const cat2 = await ok(["at", repo, "cat", `${second.id.slice(0, 8)}:/big.bin`]);
    expect(cat2.stdoutBytes.equals(changed)).toBe(true);
    await ok(["at", repo, "check"]);
  });

  it("a file of 256 MiB or more (its chunks lent from the workers' rings) round-trips and checks", async () => {
    const repo = path.join(base, "repo-ring");
    const src = path.join(base, "src-ring");
    await fsp.mkdir(src);
    // 264 MiB and 4321 bytes: 22 pieces of bigContent() variants (text and random halves), so that raw chunks
    // are encoded both by the other worker and by the reader, and dedup within the file is rare
    const file = path.join(src, "huge.bin");
    const want = createHash("sha256");
    const fh = await fsp.open(file, "w");
    const data = bigContent();
    for (let i = 0; i < 22; i++) {
      const piece = Buffer.from(data.subarray(i % 2 ? 0 : 24 << 20, (i % 2 ? 0 : 24 << 20) + (12 << 20)));
      piece.writeUInt32LE(i, 100); // a different first chunk each time
      for (let o = 4096; o < piece.byteLength; o += 1 << 20) piece[o] = i; // and a different byte in every MiB
      want.update(piece);
      await fh.write(piece);
    }
    const tail = Buffer.alloc(4321, 0x5a);
    want.update(tail);
    await fh.write(tail);
    await fh.close();
    await ok(["at", repo, "create", ...FAST_KDF]);
    const snap = parseJson<{ id: string; bytes: number }>(await ok(["at", repo, "backup", "--json", src]));
    expect(snap.bytes).toBe(22 * (12 << 20) + 4321);
    await ok(["at", repo, "check"]);
    const out = path.join(base, "out-ring");
    await ok(["at", repo, "restore", "--to", out, snap.id.slice(0, 8)]);
    const got = createHash("sha256");
    for await (const b of (await fsp.open(path.join(out, "huge.bin"))).createReadStream()) got.update(b as Buffer);
    expect(got.digest("hex")).toBe(want.digest("hex"));
    await fsp.rm(out, { recursive: true });
    await fsp.rm(src, { recursive: true });
  });

  it("a file read by the workers is cut where the streaming chunker cuts the same bytes from stdin", async () => {
    const data = bigContent();
    // 48 MiB (large-file path: direct reads where the file system has them), 40 MiB and 1234 bytes (the
    // same, ending off the 4 KiB alignment of direct reads), 20 MiB (read in pieces), 900 KiB (read whole);
    // a repository each
    const sizes = [["large", data.byteLength], ["large-odd", (40 << 20) + 1234], ["pieces", 20 << 20], ["whole", 900 << 10]] as const;
    for (const [name, size] of sizes) {
      const repo = path.join(base, `repo-cuts-${name}`);
      await ok(["at", repo, "create", ...FAST_KDF]);
      const src = path.join(base, `cuts-${name}`);
      await fsp.mkdir(src);
      const content = data.subarray(data.byteLength - size); // starts in the text, ends in the random bytes
      await fsp.writeFile(path.join(src, "f.bin"), content);
      const fromFile = parseJson<{ newBytes: number }>(await ok(["at", repo, "backup", "--json", src]));
      expect(fromFile.newBytes).toBeGreaterThanOrEqual(size);
      const fromStdin = parseJson<{ newBytes: number; bytes: number }>(await ok(["at", repo, "backup", "--json", `stdin:${name}.bin`], Buffer.from(content)));
      expect(fromStdin.bytes).toBe(size);
      // only a tree and a snapshot header are new: every chunk was already there
      expect(fromStdin.newBytes).toBeLessThan(64 << 10);
    }
  });
});
