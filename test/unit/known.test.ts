/**
 * The record of known repositories (src/cli/known.ts): where it lives,
 * how a location is keyed, what check() refuses and what record() writes.
 */
import { mkdtempSync, promises as fsp, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { KnownRepositories, knownDir, locationKey } from "../../src/cli/known.js";
import { newConfig, type RepositoryConfig } from "../../src/repository/config.js";
import { CofferError } from "../../src/util/errors.js";

const dir = mkdtempSync(path.join(tmpdir(), "coffer-known-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;

function known(): { k: KnownRepositories; warnings: string[] } {
  const warnings: string[] = [];
  return { k: new KnownRepositories(path.join(dir, String(++n)), (m) => warnings.push(m), "/"), warnings };
}

async function codeOf(p: Promise<unknown>): Promise<string | undefined> {
  return p.then(
    () => undefined,
    (e: unknown) => (e instanceof CofferError ? e.code : String(e)),
  );
}

const KDF = { memory: 8, passes: 1, parallelism: 1 };
const chunking = { min: 512, avg: 1024, max: 4096 };
const enc = (await newConfig({ chunking, mac: "blake3", compression: "zstd", passphrase: "p", kdf: KDF })).config;
/** The same repository ID, its configuration rewritten to plaintext. */
const downgraded: RepositoryConfig = { ...enc, encryption: null };

describe("knownDir and locationKey", () => {
  it("uses an absolute XDG_CACHE_HOME, else HOME/.cache", () => {
    expect(knownDir({ XDG_CACHE_HOME: "/x/cache", HOME: "/h" })).toBe("/x/cache/coffer");
    expect(knownDir({ XDG_CACHE_HOME: "relative", HOME: "/h" })).toBe("/h/.cache/coffer");
    expect(knownDir({ XDG_CACHE_HOME: "", HOME: "/h" })).toBe("/h/.cache/coffer");
  });

  it("keys a path by its absolute form and store type; other locations as given", () => {
    expect(locationKey("repo", "/work")).toBe("fs:/work/repo");
    expect(locationKey("/a/../b/", "/work")).toBe("fs:/b");
    expect(locationKey("fs:/b", "/work")).toBe("fs:/b");
    expect(locationKey("x.ptar", "/work")).toBe("ptar:/work/x.ptar");
    expect(locationKey("sftp://host/path", "/work")).toBe("sftp://host/path");
  });
});

describe("KnownRepositories", () => {
  it("knows nothing at first; after record() refuses the plaintext rewrite by ID and by location", async () => {
    const { k, warnings } = known();
    await k.check(downgraded, "/r");
    await k.record(enc, "/r");
    const again = new KnownRepositories(k.dir, (m) => warnings.push(m), "/");
    expect(await codeOf(again.check(downgraded, "/r"))).toBe("CORRUPT");
    expect(await codeOf(again.check(downgraded, "/elsewhere"))).toBe("CORRUPT");
    const otherId: RepositoryConfig = { ...downgraded, id: new Uint8Array(32).fill(1) };
    expect(await codeOf(again.check(otherId, "/r"))).toBe("CORRUPT");
    expect(await codeOf(again.check(otherId, "/elsewhere"))).toBeUndefined();
    // encrypted is fine, and an older version is not
    expect(await codeOf(again.check(enc, "/r"))).toBeUndefined();
    expect(await codeOf(again.check({ ...enc, version: 1, configMac: null }, "/r"))).toBe("CORRUPT");
    expect(warnings).toEqual([]);
  });

  it("a location opened with another encrypted repository follows it; the ID's record keeps what it saw", async () => {
    const { k } = known();
    await k.record(enc, "/r");
    const other = (await newConfig({ chunking, mac: "blake3", compression: "zstd", passphrase: null })).config;
    const k2 = new KnownRepositories(k.dir, () => {}, "/");
    await k2.record(other, "/r");
    // the location now holds a plaintext repository: a plaintext one there is fine...
    expect(await codeOf(new KnownRepositories(k.dir, () => {}, "/").check({ ...other, id: new Uint8Array(32).fill(9) }, "/r"))).toBeUndefined();
    // ...but enc's ID stays known encrypted
    expect(await codeOf(new KnownRepositories(k.dir, () => {}, "/").check(downgraded, "/r"))).toBe("CORRUPT");
  });

  it("writes only when something changed, leaving no temporary file", async () => {
    const { k } = known();
    await k.record(enc, "/r");
    const file = k.idFile(enc.id);
    await fsp.utimes(file, 1, 1);
    await new KnownRepositories(k.dir, () => {}, "/").record(enc, "/r");
    expect((await fsp.stat(file, { bigint: true })).mtimeNs).toBe(1_000_000_000n);
    expect((await fsp.readdir(path.dirname(file))).filter((f) => f.endsWith(".tmp"))).toEqual([]);
  });

  it("a garbled record is a warning and counts as none; record() rewrites it", async () => {
    const { k, warnings } = known();
    await k.record(enc, "/r");
    await fsp.writeFile(k.idFile(enc.id), "garbage");
    await fsp.writeFile(k.locationFile("/r"), JSON.stringify({ v: 1, location: "fs:/somewhere-else", id: "00".repeat(32), encrypted: true, version: 2 }));
    const k2 = new KnownRepositories(k.dir, (m) => warnings.push(m), "/");
    expect(await codeOf(k2.check(downgraded, "/r"))).toBeUndefined();
    expect(warnings).toHaveLength(2);
    expect(warnings.join("\n")).toMatch(/not JSON/);
    expect(warnings.join("\n")).toMatch(/another repository or location/);
    await k2.record(enc, "/r");
    expect(warnings).toHaveLength(2); // check's reading is reused
    expect(await codeOf(new KnownRepositories(k.dir, () => {}, "/").check(downgraded, "/r"))).toBe("CORRUPT");
  });
});
