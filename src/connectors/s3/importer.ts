/**
 * The S3 importer (type "s3"): every object under the location's prefix as
 * a regular file, its size and LastModified as the file's, its ETag as the
 * content tag (FileInfo.contentTag), so that a backup whose parent holds
 * the same size, mtime and tag reads nothing. Directories are implied by
 * the `/` in keys (or given by empty "folder" objects), each with the
 * latest mtime of what it holds.
 *
 * One listing of the whole prefix, without a delimiter: a request per
 * 1,000 keys, not per directory. Keys come in byte order, so the keys
 * below a directory come together: a directory's record is yielded once
 * the listing has passed it, and memory holds only the directories open
 * at the current key.
 */
import type { _Object, S3Client } from "@aws-sdk/client-s3";
import ignore, { type Ignore } from "ignore";
import { CofferError, throwIfAborted } from "../../util/errors.js";
import type { FileInfo, ImportOptions, Importer, ImportRecord } from "../records.js";
import { bucketExists, listObjects } from "./bucket.js";
import { makeClient } from "./client.js";
import { readObject } from "./object-reader.js";
import { keyPath } from "./object-paths.js";
import type { S3Settings } from "./settings.js";

export interface S3ImporterOptions {
  /** The run's environment, for the credentials (client.ts). */
  env?: Readonly<Record<string, string | undefined>> | undefined;
  excludes?: string[] | undefined;
  onWarning?: ((msg: string) => void) | undefined;
}

/** A directory of the current key, open until the listing leaves it. */
interface OpenDir {
  parts: string[];
  mtimeNs: bigint;
}

/** A file yielded only once no later key can make its path a directory too. */
interface HeldFile {
  rel: string;
  record: ImportRecord;
}

export class S3Importer implements Importer {
  readonly origin: string;
  readonly type = "s3";
  readonly root: string;
  readonly flags = 0;
  readonly #s: S3Settings;
  readonly #client: S3Client;
  readonly #ig: Ignore | undefined;
  readonly #warn: (msg: string) => void;

  constructor(settings: S3Settings, opts: S3ImporterOptions = {}) {
    this.#s = settings;
    this.root = settings.display;
    this.origin = settings.endpoint ?? "s3.amazonaws.com";
    this.#client = makeClient(settings, opts.env ?? {});
    const patterns = (opts.excludes ?? []).filter((p) => p.trim() !== "");
    this.#ig = patterns.length > 0 ? ignore().add(patterns) : undefined;
    this.#warn = opts.onWarning ?? (() => {});
  }

  async ping(): Promise<void> {
    if (!(await bucketExists(this.#client, this.#s, undefined))) throw this.#noBucket();
  }

  async close(): Promise<void> {
    this.#client.destroy();
  }

  async *import(opts: ImportOptions = {}): AsyncGenerator<ImportRecord> {
    const { signal } = opts;
    throwIfAborted(signal);
    const s = this.#s;
    const open: OpenDir[] = [{ parts: [], mtimeNs: 0n }];
    let held: HeldFile[] = [];
    try {
      for await (const o of listObjects(this.#client, s, s.prefix, signal)) {
        const key = o.Key ?? "";
        if (!key.startsWith(s.prefix)) continue;
        const k = keyPath(key.slice(s.prefix.length));
        if ("problem" in k) {
          this.#warn(`${s.display}: key "${key}" skipped: ${k.problem}`);
          continue;
        }
        const rel = k.parts.join("/");
        if (this.#ig !== undefined && rel !== "" && this.#ig.ignores(k.dir ? `${rel}/` : rel)) continue;
        // Files whose path this key shows to be a directory, and those no later key can.
        const below = k.dir ? `${rel}/` : rel;
        const kept: HeldFile[] = [];
        for (const h of held) {
          if (below.startsWith(`${h.rel}/`)) this.#warn(`${s.display}: key "${s.prefix}${h.rel}" skipped: it is also the directory of key "${key}"`);
          else if (rel.startsWith(h.rel)) kept.push(h);
          else yield h.record;
        }
        held = kept;
        const dirParts = k.dir ? k.parts : k.parts.slice(0, -1);
        while (!isPrefix(open.at(-1)!.parts, dirParts)) yield close(open);
        for (let n = open.at(-1)!.parts.length; n < dirParts.length; n++) open.push({ parts: dirParts.slice(0, n + 1), mtimeNs: 0n });
        const mtimeNs = mtimeOf(o);
        const dir = open.at(-1)!;
        if (mtimeNs > dir.mtimeNs) dir.mtimeNs = mtimeNs;
        if (k.dir) {
          if ((o.Size ?? 0) > 0) this.#warn(`${s.display}: key "${key}" names a directory: its ${o.Size} bytes are not backed up`);
          continue;
        }
        held.push({ rel, record: this.#fileRecord(key, k.parts, o, mtimeNs, signal) });
      }
    } catch (e) {
      if (e instanceof CofferError && e.data.s3Code === "NoSuchBucket") throw this.#noBucket();
      throw e;
    }
    for (const h of held) yield h.record;
    while (open.length > 0) yield close(open);
  }

  #fileRecord(key: string, parts: string[], o: _Object, mtimeNs: bigint, signal: AbortSignal | undefined): ImportRecord {
    const size = o.Size ?? 0;
    const name = parts.at(-1)!;
    const fileInfo: FileInfo = { ...STAT, name, kind: "file", size, mode: 0o644, mtimeNs };
    if (o.ETag !== undefined) fileInfo.contentTag = o.ETag;
    const record: ImportRecord = { pathname: `/${parts.join("/")}`, fileInfo };
    if (size > 0) {
      const listed = { key, size, etag: o.ETag };
      record.open = async () => readObject(this.#client, this.#s, listed, signal);
    }
    return record;
  }

  #noBucket(): CofferError {
    const s = this.#s;
    return new CofferError("IO", `[s3] ${s.display}: bucket "${s.bucket}" does not exist`, { location: s.display, bucket: s.bucket, s3Code: "NoSuchBucket" });
  }
}

/** What S3 does not have: owners, inodes, links. */
const STAT = { dev: 0n, ino: 0n, uid: 0, gid: 0, nlink: 1 } as const;

function mtimeOf(o: _Object): bigint {
  return o.LastModified !== undefined ? BigInt(o.LastModified.getTime()) * 1_000_000n : 0n;
}

function isPrefix(a: readonly string[], b: readonly string[]): boolean {
  if (a.length > b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** The record of the innermost open directory, its mtime given to the one that holds it. */
function close(open: OpenDir[]): ImportRecord {
  const d = open.pop()!;
  const up = open.at(-1);
  if (up !== undefined && d.mtimeNs > up.mtimeNs) up.mtimeNs = d.mtimeNs;
  const name = d.parts.at(-1) ?? "";
  return { pathname: `/${d.parts.join("/")}`, fileInfo: { ...STAT, name, kind: "dir", size: 0, mode: 0o755, mtimeNs: d.mtimeNs } };
}
