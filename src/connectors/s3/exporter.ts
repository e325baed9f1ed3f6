/**
 * The S3 exporter (type "s3", `restore --to s3://...`): each regular file
 * as an object under the location's prefix, its key the file's path, its
 * mtime kept as `mtime` user metadata (uploads.ts). Directories are implied
 * by the keys below them; one left empty is an empty object named `DIR/`,
 * written by finish() once it is known to be empty. Other kinds (symlinks,
 * devices, FIFOs) have no S3 form: each gets an error result. A record's
 * result comes once its object is stored (the PutObject, or the
 * CompleteMultipartUpload, answered), so a successful result means it is
 * durably there.
 */
import { PutObjectCommand, type S3Client } from "@aws-sdk/client-s3";
import { throwIfAborted } from "../../util/errors.js";
import type { ExportRecord, ExportResult, Exporter, ImportOptions } from "../records.js";
import { aborting, bucketExists, createBucket } from "./bucket.js";
import { makeClient } from "./client.js";
import { pathKey } from "./object-paths.js";
import { s3Error, withRetries } from "./requests.js";
import type { S3Settings } from "./settings.js";
import { Uploader } from "./uploads.js";

export interface S3ExporterOptions {
  /** The run's environment, for the credentials (client.ts). */
  env?: Readonly<Record<string, string | undefined>> | undefined;
}

export class S3Exporter implements Exporter {
  readonly origin: string;
  readonly type = "s3";
  readonly root: string;
  readonly flags = 0;
  readonly #s: S3Settings;
  readonly #client: S3Client;
  readonly #uploads: Uploader;
  /** Directories exported (paths without the leading /), and those something was exported below. */
  readonly #dirs = new Set<string>();
  readonly #filled = new Set<string>();

  constructor(settings: S3Settings, opts: S3ExporterOptions = {}) {
    this.#s = settings;
    this.root = settings.display;
    this.origin = settings.endpoint ?? "s3.amazonaws.com";
    this.#client = makeClient(settings, opts.env ?? {});
    this.#uploads = new Uploader(this.#client, settings);
  }

  /** Makes the bucket when it is missing (and the credentials allow it). */
  async ping(): Promise<void> {
    if (!(await bucketExists(this.#client, this.#s, undefined))) await createBucket(this.#client, this.#s, undefined);
  }

  async export(record: ExportRecord, opts: ImportOptions = {}): Promise<ExportResult> {
    const { signal } = opts;
    throwIfAborted(signal);
    const { pathname, fileInfo } = record;
    const where = pathKey(this.#s.prefix, pathname);
    if ("problem" in where) return { pathname, error: `unsafe path ${JSON.stringify(pathname)}: ${where.problem}` };
    switch (fileInfo.kind) {
      case "dir":
        if (where.rel !== "") this.#dirs.add(where.rel);
        this.#fill(where.rel);
        return { pathname };
      case "file": {
        this.#fill(where.rel);
        const content = record.content?.() ?? empty();
        await this.#uploads.upload(where.key, content, { mtimeNs: fileInfo.mtimeNs, sizeHint: fileInfo.size }, signal);
        return { pathname };
      }
      default:
        return { pathname, error: `a ${fileInfo.kind === "symlink" ? "symbolic link" : fileInfo.kind}: S3 holds only files and directories` };
    }
  }

  /** Writes the marker of each directory nothing was exported below. */
  async finish(opts: ImportOptions = {}): Promise<ExportResult[]> {
    const { signal } = opts;
    const failed: ExportResult[] = [];
    for (const rel of this.#dirs) {
      if (this.#filled.has(rel)) continue;
      throwIfAborted(signal);
      const Key = `${this.#s.prefix}${rel}/`;
      try {
        await withRetries(signal, () => this.#client.send(new PutObjectCommand({ Bucket: this.#s.bucket, Key, Body: new Uint8Array(0), ContentLength: 0 }), aborting(signal)));
      } catch (e) {
        failed.push({ pathname: `/${rel}`, error: s3Error(e, this.#s, "write", Key, signal).message });
      }
    }
    return failed;
  }

  async close(): Promise<void> {
    this.#client.destroy();
  }

  /** Marks the directories above `rel` as holding something. */
  #fill(rel: string): void {
    for (let at = rel.lastIndexOf("/"); at > 0; at = rel.lastIndexOf("/", at - 1)) {
      const dir = rel.slice(0, at);
      if (this.#filled.has(dir)) return;
      this.#filled.add(dir);
    }
  }
}

async function* empty(): AsyncGenerator<never> {}
