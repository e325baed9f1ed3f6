/**
 * Plugin packages: one file (a ptar archive, the single-file store) holding
 * a manifest and the files it names. The archive's config blob is msgpack
 * {v: 1, kind: "coffer-package", manifest: YAML text, files: [{path, mode,
 * size, sha256}]}; each file's bytes are a PACKFILE object named by its
 * SHA-256, checked when the package is read. Building and reading need no
 * network.
 */
import { createHash } from "node:crypto";
import { lstat, readdir, readFile, realpath, rm } from "node:fs/promises";
import { dirname, join, relative, resolve, sep } from "node:path";
import { decode, encode } from "@msgpack/msgpack";
import { Resource } from "../connectors/flags.js";
import { PtarStore } from "../connectors/ptar/store.js";
import { CofferError } from "../util/errors.js";
import { toHex } from "../util/hex.js";
import { checkPackagePath, type Manifest, parseManifest } from "./manifest.js";

const PACKAGE_KIND = "coffer-package";

export interface PackageFile {
  path: string;
  /** 0o755 for executables, else 0o644. */
  mode: number;
  size: number;
  sha256: Uint8Array;
}

export interface PackageIndex {
  manifestText: string;
  manifest: Manifest;
  files: PackageFile[];
}

/**
 * Every file a manifest needs (executables and extra files; directories
 * taken whole), relative to `root`, each with the real path it is read
 * from. Every path must resolve inside `root` whatever its components are
 * (a component that is a symlink out of it, `etcdir -> /etc`, is refused
 * naming the path); a file named directly may not be a symlink at all.
 */
async function collect(root: string, manifest: Manifest, file: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const realRoot = await realpath(root);
  /** The real path of `abs` (a manifest's `rel`), refused unless it is inside the manifest's directory. */
  const inside = async (abs: string, rel: string, field: string): Promise<string> => {
    const real = await realpath(abs);
    if (real !== realRoot && !real.startsWith(realRoot.endsWith(sep) ? realRoot : realRoot + sep)) {
      throw new CofferError("USAGE", `${file}: ${field}: ${rel} resolves to ${real}, outside the manifest's directory ${realRoot}; packages hold only files inside it`);
    }
    return real;
  };
  const add = async (rel: string, field: string) => {
    const abs = resolve(root, rel);
    const st = await lstat(abs).catch(() => null);
    if (!st) throw new CofferError("USAGE", `${file}: ${field}: ${rel} does not exist (relative to ${root})`);
    if (st.isSymbolicLink()) throw new CofferError("USAGE", `${file}: ${field}: ${rel} is a symbolic link; packages hold regular files only`);
    const real = await inside(abs, rel, field);
    if (st.isDirectory()) {
      for (const e of await readdir(real, { recursive: true, withFileTypes: true })) {
        if (e.isDirectory()) continue;
        const p = `${rel.replace(/\/+$/, "")}/${relative(real, join(e.parentPath, e.name)).split(sep).join("/")}`;
        if (!e.isFile()) throw new CofferError("USAGE", `${file}: ${field}: ${p} is not a regular file`);
        out.set(p, await inside(join(e.parentPath, e.name), p, field));
      }
      return;
    }
    if (!st.isFile()) throw new CofferError("USAGE", `${file}: ${field}: ${rel} is not a regular file`);
    out.set(rel, real);
  };
  for (const [i, c] of manifest.connectors.entries()) {
    await add(c.executable, `connectors[${i}].executable`);
    for (const [j, x] of c.extraFiles.entries()) await add(x, `connectors[${i}].extra_files[${j}]`);
  }
  return out;
}

function packageFileName(m: Manifest): string {
  return `${m.name}_${m.version.replace(/^v/, "")}.ptar`;
}

/** Builds the package of the manifest at `manifestPath` into `outDir`; returns its path. */
export async function createPackage(manifestPath: string, outDir: string): Promise<{ path: string; index: PackageIndex }> {
  const manifestText = await readFile(manifestPath, "utf8").catch((e: NodeJS.ErrnoException) => {
    throw new CofferError("USAGE", `cannot read manifest ${manifestPath}: ${e.code ?? e.message}`);
  });
  const manifest = parseManifest(manifestText, manifestPath);
  const files = await collect(dirname(resolve(manifestPath)), manifest, manifestPath);
  const execs = new Set(manifest.connectors.map((c) => c.executable));
  const entries: { file: PackageFile; data: Uint8Array }[] = [];
  for (const [p, abs] of [...files].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    const data = await readFile(abs);
    const st = await lstat(abs);
    const mode = execs.has(p) || st.mode & 0o111 ? 0o755 : 0o644;
    entries.push({ file: { path: p, mode, size: data.byteLength, sha256: createHash("sha256").update(data).digest() }, data });
  }
  const index: PackageIndex = { manifestText, manifest, files: entries.map((e) => e.file) };
  const out = resolve(outDir, packageFileName(manifest));
  await rm(out, { force: true });
  const store = new PtarStore(out);
  try {
    await store.create(encode({ v: 1, kind: PACKAGE_KIND, manifest: manifestText, files: index.files }));
    const stored = new Set<string>();
    for (const e of entries) {
      const k = toHex(e.file.sha256);
      if (stored.has(k)) continue;
      stored.add(k);
      await store.put(Resource.PACKFILE, e.file.sha256, e.data);
    }
  } finally {
    await store.close();
  }
  return { path: out, index };
}

function decodeIndex(raw: Uint8Array, file: string): PackageIndex {
  const bad = (why: string) => new CofferError("CORRUPT", `${file} is not a valid coffer package: ${why}`);
  let o: Record<string, unknown>;
  try {
    o = decode(raw) as Record<string, unknown>;
  } catch {
    throw bad("undecodable index");
  }
  if (typeof o !== "object" || o === null || o.kind !== PACKAGE_KIND) throw bad("not a package (a repository?)");
  if (o.v !== 1) throw bad(`unsupported package version ${String(o.v)}`);
  if (typeof o.manifest !== "string") throw bad("no manifest");
  const manifest = parseManifest(o.manifest, `${file}: manifest`);
  if (!Array.isArray(o.files)) throw bad("no file list");
  const files = o.files.map((f: unknown, i: number): PackageFile => {
    const x = f as Record<string, unknown>;
    if (typeof x !== "object" || x === null || typeof x.path !== "string" || !checkPackagePath(x.path)) throw bad(`files[${i}]: bad path`);
    if (x.mode !== 0o755 && x.mode !== 0o644) throw bad(`files[${i}]: bad mode`);
    if (typeof x.size !== "number" || !Number.isSafeInteger(x.size) || x.size < 0) throw bad(`files[${i}]: bad size`);
    if (!(x.sha256 instanceof Uint8Array) || x.sha256.byteLength !== 32) throw bad(`files[${i}]: bad sha256`);
    return { path: x.path, mode: x.mode, size: x.size, sha256: x.sha256 };
  });
  const paths = new Set(files.map((f) => f.path));
  if (paths.size !== files.length) throw bad("a file is listed twice");
  for (const c of manifest.connectors) {
    if (!paths.has(c.executable)) throw bad(`the executable ${c.executable} is missing`);
    for (const x of c.extraFiles) if (!paths.has(x) && ![...paths].some((p) => p.startsWith(`${x}/`))) throw bad(`the extra file ${x} is missing`);
  }
  return { manifestText: o.manifest, manifest, files };
}

/** Reads a package: its index, and each file's bytes checked against its SHA-256 (`each` gets them in index order). */
export async function readPackage(file: string, each?: (f: PackageFile, data: Uint8Array) => Promise<void>): Promise<PackageIndex> {
  const store = new PtarStore(file, { readOnly: true });
  try {
    let raw: Uint8Array;
    try {
      raw = await store.open();
    } catch (e) {
      if (e instanceof CofferError && e.code === "NO_REPOSITORY") throw new CofferError("USAGE", `no package at ${file}`);
      throw e;
    }
    const index = decodeIndex(raw, file);
    if (each) {
      for (const f of index.files) {
        const data = await store.get(Resource.PACKFILE, f.sha256).catch((e: unknown) => {
          throw new CofferError("CORRUPT", `${file}: ${f.path} is missing from the package (${(e as Error).message})`);
        });
        const sum = createHash("sha256").update(data).digest();
        if (data.byteLength !== f.size || !sum.equals(f.sha256)) throw new CofferError("CORRUPT", `${file}: ${f.path} is damaged (checksum mismatch)`);
        await each(f, data);
      }
    }
    return index;
  } finally {
    await store.close();
  }
}
