/**
 * The exporter kit on TarExporter, writing base/x.tar (and base/x.tar.gz),
 * or standard output (a collecting Writable). After the kit called
 * finish(), readBack() has GNU tar extract the archive
 * (--xattrs --xattrs-include='*' --same-owner -xpf; it must succeed without
 * a word on stderr) into a directory of its own and walks it with readTree
 * (./read-tree.ts), as for the fs exporter.
 *
 * With --delay-directory-restore: the exporter writes members in the order
 * records come, and the kit exports some (/dir/link) after records outside
 * their directory. GNU tar otherwise sets a directory's mtime as soon as
 * extraction leaves it, and a later member written into it changes it
 * again (the archive holds the right time). The core's restore walks
 * depth-first, so its archives keep each directory's members together.
 *
 * The archive holds no entry for the root (see TarExporter): unless it has
 * a "./" member, the directory GNU tar extracts into is ours, not something
 * the exporter wrote, so readBack() gives "/" without mode, mtime or xattrs
 * (the kit does not compare fields left out).
 *
 * escaped(): a tar exporter writes no tree, only its archive, so what it
 * could put outside its target is (1) any other file next to the archive
 * (e.g. a temporary file left behind), and (2) members that would land
 * outside the directory they are extracted into: absolute names, ".."
 * components, names under a symlink member, hard links to such names.
 * Both are listed; the archive's members are read with tar-stream, not
 * with the connector's own reader.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { promises as fsp } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { gunzipSync } from "node:zlib";
import { extract } from "tar-stream";
import type { Header } from "tar-stream";
import { TarExporter } from "../../src/connectors/tar/exporter.js";
import { exporterKit } from "../../src/sdk/kits/index.js";
import type { ExpectedEntry, ExporterFixture } from "../../src/sdk/kits/index.js";
import { vitestHarness } from "./harness.js";
import { readTree } from "./read-tree.js";

/** What the tar exporter writes, as far as GNU tar extracts it. */
const SUPPORTS = { symlinks: true, hardlinks: true, fifos: true, xattrs: true };

/** Keeps a copy of every chunk (the exporter's buffers may be reused), answering each write a turn later. */
class Collector extends Writable {
  readonly chunks: Buffer[] = [];
  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.chunks.push(Buffer.from(chunk));
    setImmediate(callback);
  }
}

const isGzip = (b: Buffer): boolean => b.length >= 2 && b[0] === 0x1f && b[1] === 0x8b;

/** The archive as it must be: gzip-compressed exactly when asked. */
function checkCompression(bytes: Buffer, gzip: boolean): void {
  assert.equal(isGzip(bytes), gzip, `the archive is ${isGzip(bytes) ? "" : "not "}gzip-compressed`);
}

/** The members' headers, in archive order (read with tar-stream). */
async function members(bytes: Buffer, gzip: boolean): Promise<Header[]> {
  const ex = extract();
  const out: Header[] = [];
  const read = (async () => {
    for await (const entry of ex) {
      out.push(entry.header);
      entry.resume();
    }
  })();
  ex.end(gzip ? gunzipSync(bytes) : bytes);
  await read;
  return out;
}

/** A member name as a relative path: "./" and "/" components dropped ("" for the root). */
function rel(name: string): string {
  return name
    .split("/")
    .filter((p) => p !== "" && p !== ".")
    .join("/");
}

/** Members that would be written outside the directory the archive is extracted into. */
function escapingMembers(headers: readonly Header[]): string[] {
  const out: string[] = [];
  const symlinks = new Set<string>();
  const outside = (name: string): string | undefined => {
    if (name.startsWith("/")) return "absolute";
    const parts = rel(name).split("/");
    if (parts.includes("..")) return 'a ".." component';
    for (let i = 1; i < parts.length; i++) {
      const parent = parts.slice(0, i).join("/");
      if (symlinks.has(parent)) return `under the symlink member ${JSON.stringify(parent)}`;
    }
    return undefined;
  };
  for (const h of headers) {
    const why = outside(h.name);
    if (why !== undefined) out.push(`member ${JSON.stringify(h.name)}: ${why}`);
    if (h.type === "link") {
      const to = outside(h.linkname ?? "");
      if (to !== undefined) out.push(`member ${JSON.stringify(h.name)}: a hard link to ${JSON.stringify(h.linkname)}, ${to}`);
    }
    if (h.type === "symlink") symlinks.add(rel(h.name));
  }
  return out;
}

/** Extracts the archive with GNU tar into a new directory under `scratch` and reads the tree back. */
async function extractAndRead(bytes: Buffer, gzip: boolean, scratch: string): Promise<ExpectedEntry[]> {
  checkCompression(bytes, gzip);
  const file = join(scratch, gzip ? "copy.tar.gz" : "copy.tar");
  await fsp.writeFile(file, bytes);
  const out = await fsp.mkdtemp(join(scratch, "extracted-"));
  const r = spawnSync("tar", ["--xattrs", "--xattrs-include=*", "--same-owner", "--delay-directory-restore", "-xpf", file, "-C", out], { encoding: "utf8" });
  if (r.status !== 0 || r.stderr !== "") throw new Error(`GNU tar could not extract the archive cleanly (exit ${String(r.status)}): ${r.stderr || r.error?.message}`);
  const tree = await readTree(out);
  const hasRoot = (await members(bytes, gzip)).some((h) => rel(h.name) === "");
  if (!hasRoot) {
    // No "./" member: the extraction directory's metadata is ours, not the exporter's.
    const root = tree.find((e) => e.pathname === "/");
    if (root !== undefined) {
      delete root.mode;
      delete root.mtimeNs;
      delete root.xattrs;
    }
  }
  return tree;
}

/** To a file: base holds only the archive, the extraction happens elsewhere. */
function toFile(gzip: boolean): () => Promise<ExporterFixture> {
  return async () => {
    const base = await fsp.mkdtemp(join(tmpdir(), "coffer-kit-tar-exporter-"));
    const scratch = await fsp.mkdtemp(join(tmpdir(), "coffer-kit-tar-exporter-read-"));
    const name = gzip ? "x.tar.gz" : "x.tar";
    const archive = join(base, name);
    return {
      exporter: new TarExporter(archive, { gzip }),
      supports: SUPPORTS,
      readBack: async () => extractAndRead(await fsp.readFile(archive), gzip, scratch),
      escaped: async () => {
        const beside = (await fsp.readdir(base)).filter((n) => n !== name).map((n) => join(base, n));
        const bytes = await fsp.readFile(archive);
        checkCompression(bytes, gzip);
        return [...beside, ...escapingMembers(await members(bytes, gzip))];
      },
      cleanup: async () => {
        await fsp.rm(base, { recursive: true, force: true });
        await fsp.rm(scratch, { recursive: true, force: true });
      },
    };
  };
}

/** To standard output: what was written is the archive. */
function toStdout(gzip: boolean): () => Promise<ExporterFixture> {
  return async () => {
    const out = new Collector();
    const scratch = await fsp.mkdtemp(join(tmpdir(), "coffer-kit-tar-exporter-stdout-"));
    const bytes = () => Buffer.concat(out.chunks);
    return {
      exporter: new TarExporter("-", { gzip, stdout: out }),
      supports: SUPPORTS,
      readBack: () => extractAndRead(bytes(), gzip, scratch),
      escaped: async () => {
        checkCompression(bytes(), gzip);
        return escapingMembers(await members(bytes(), gzip));
      },
      cleanup: async () => {
        out.destroy();
        await fsp.rm(scratch, { recursive: true, force: true });
      },
    };
  };
}

const h = vitestHarness();
exporterKit(h, "tar", toFile(false));
exporterKit(h, "tar+gz", toFile(true));
exporterKit(h, "tar (standard output)", toStdout(false));
exporterKit(h, "tar+gz (standard output)", toStdout(true));
