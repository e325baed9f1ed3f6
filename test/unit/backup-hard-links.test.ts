/**
 * Hard links within one backup (src/snapshot/backup/hard-links.ts): the
 * inode key, chunks shared by inode, and `linkTarget` records waiting for
 * the file they name while it is being stored.
 */
import { describe, expect, it } from "vitest";
import type { ImportRecord } from "../../src/connectors/records.js";
import { HardLinks, inodeKey } from "../../src/snapshot/backup/hard-links.js";
import type { ChunkRef, Entry } from "../../src/snapshot/tree.js";
import { info } from "../helpers/backup-parts.js";

const chunks = (n: number): ChunkRef[] => [{ mac: new Uint8Array(32).fill(n), length: n }];
const link = (pathname: string, linkTarget: string): ImportRecord => ({ pathname, linkTarget, fileInfo: info("l", "file") });

describe("inodeKey", () => {
  it("keys a file with other links by device and inode; a file with one link has none", () => {
    expect(inodeKey(info("f", "file", { nlink: 1, dev: 3n, ino: 4n }))).toBeUndefined();
    expect(inodeKey(info("f", "file", { nlink: 2, dev: 3n, ino: 4n }))).toBe("3:4");
    expect(inodeKey(info("f", "file", { nlink: 2, dev: 3n, ino: 5n }))).not.toBe(inodeKey(info("f", "file", { nlink: 2, dev: 35n, ino: 0n })));
  });
});

describe("HardLinks", () => {
  it("shares the chunks of an inode's first file", async () => {
    const links = new HardLinks(() => undefined);
    expect(links.hasInode("1:2")).toBe(false);
    expect(links.ofInode("1:2")).toBeUndefined();
    links.setInode("1:2", Promise.resolve(chunks(1)));
    expect(links.hasInode("1:2")).toBe(true);
    expect(await links.ofInode("1:2")).toEqual(chunks(1));
  });

  it("a link target being stored: the link waits and gets its chunks", async () => {
    const links = new HardLinks(() => undefined);
    const give = links.begin("/t");
    let got: ChunkRef[] | undefined;
    const waiting = links.target(link("/l", "/t")).then((c) => (got = c));
    await new Promise((r) => setImmediate(r));
    expect(got, "still waiting").toBeUndefined();
    give(chunks(2));
    links.end("/t", give);
    await waiting;
    expect(got).toEqual(chunks(2));
  });

  it("a link target that ends without chunks (it failed) fails the link, as IO", async () => {
    const links = new HardLinks(() => undefined);
    const give = links.begin("/t");
    const waiting = links.target(link("/l", "/t"));
    links.end("/t", give);
    await expect(waiting).rejects.toMatchObject({ code: "IO", message: "hard link target /t is not a stored file" });
  });

  it("a link target stored earlier comes from the stored entries; an unknown one fails as IO", async () => {
    const stored = new Map<string, Entry>([["/t", { name: "t", info: info("t", "file"), chunks: chunks(3) }]]);
    const links = new HardLinks((p) => stored.get(p));
    expect(await links.target(link("/l", "/t"))).toEqual(chunks(3));
    await expect(links.target(link("/l", "/nowhere"))).rejects.toMatchObject({ code: "IO" });
    // Once ended, a path is looked up among the stored entries again.
    links.end("/t", links.begin("/t"));
    expect(await links.target(link("/l", "/t"))).toEqual(chunks(3));
  });
});
