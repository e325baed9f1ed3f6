/**
 * How the S3 exporter writes one object from a file's content pieces,
 * streaming and in bounded memory: content that fits in one part is one
 * PutObject with Content-Length and Content-MD5; larger content is a
 * multipart upload, its parts sent as they fill (several at once), aborted
 * when anything fails, so that an object is visible whole or not at all.
 * Part buffers are lent from one budget per exporter (`connections` of
 * them), whatever the number of files in flight.
 */
import { createHash } from "node:crypto";
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  type CompletedPart,
  CreateMultipartUploadCommand,
  PutObjectCommand,
  type PutObjectCommandInput,
  type S3Client,
  UploadPartCommand,
} from "@aws-sdk/client-s3";
import { abortError, CofferError, throwIfAborted } from "../../util/errors.js";
import type { ContentPiece } from "../records.js";
import { aborting } from "./bucket.js";
import { s3Error, withRetries } from "./requests.js";
import type { S3Settings } from "./settings.js";

const MiB = 1 << 20;
/** The smallest part (S3's least for all but the last is 5 MiB). */
const PART_SIZE = 8 * MiB;
/** S3's most parts in one upload. */
const MAX_PARTS = 10_000;

/** What an object is written with besides its bytes. */
export interface ObjectMeta {
  /** The file's mtime, kept as the `mtime` user metadata (seconds, as rclone writes it). */
  mtimeNs: bigint;
  /** The content length the record announces: it sizes the parts. */
  sizeHint: number;
}

export class Uploader {
  readonly #budget: Budget;

  constructor(
    private readonly client: S3Client,
    private readonly s: S3Settings,
  ) {
    this.#budget = new Budget(s.connections);
  }

  /** Writes `pieces` (in file order) as `key`; resolves once the object is stored. */
  async upload(key: string, pieces: AsyncIterable<ContentPiece>, meta: ObjectMeta, signal: AbortSignal | undefined): Promise<void> {
    const partSize = Math.max(PART_SIZE, Math.ceil(meta.sizeHint / MAX_PARTS / MiB) * MiB);
    const input = this.#objectInput(key, meta);
    const it = pieces[Symbol.asyncIterator]();
    const reader = new PartReader(it, key);
    let multipart: Multipart | undefined;
    try {
      for (;;) {
        await this.#budget.take(signal);
        let lent = true;
        try {
          const part = await reader.fill(partSize, meta.sizeHint - reader.done, signal);
          if (multipart === undefined && part.last) {
            await this.#put(input, part.bytes, signal);
            return;
          }
          multipart ??= await Multipart.start(this.client, this.s, input, signal);
          lent = false;
          multipart.send(part.bytes, signal, () => this.#budget.give());
          if (part.last) break;
        } finally {
          if (lent) this.#budget.give();
        }
      }
      await (multipart as Multipart).complete(signal);
    } catch (e) {
      await multipart?.abort();
      await it.return?.();
      if (signal?.aborted) throw abortError(signal);
      throw e;
    }
  }

  #objectInput(key: string, meta: ObjectMeta): PutObjectCommandInput {
    const s = this.s;
    return {
      Bucket: s.bucket,
      Key: key,
      Metadata: { mtime: mtimeText(meta.mtimeNs) },
      ...(s.storageClass !== undefined ? { StorageClass: s.storageClass as never } : {}),
      ...(s.sse !== undefined ? { ServerSideEncryption: s.sse.algorithm, ...(s.sse.kmsKeyId !== undefined ? { SSEKMSKeyId: s.sse.kmsKeyId } : {}) } : {}),
      ...(s.objectLock !== undefined ? { ObjectLockMode: s.objectLock.mode, ObjectLockRetainUntilDate: new Date(Date.now() + s.objectLock.days * 86_400_000) } : {}),
    };
  }

  async #put(input: PutObjectCommandInput, body: Uint8Array, signal: AbortSignal | undefined): Promise<void> {
    try {
      await withRetries(signal, () => this.client.send(new PutObjectCommand({ ...input, Body: body, ContentLength: body.byteLength, ContentMD5: md5(body) }), aborting(signal)));
    } catch (e) {
      throw s3Error(e, this.s, "write", input.Key, signal);
    }
  }
}

/** One multipart upload: parts sent as they come, at most as many at once as the budget lends buffers. */
class Multipart {
  readonly #parts: Promise<CompletedPart>[] = [];
  #failed: unknown;

  private constructor(
    private readonly client: S3Client,
    private readonly s: S3Settings,
    private readonly key: string,
    private readonly uploadId: string,
  ) {}

  static async start(client: S3Client, s: S3Settings, input: PutObjectCommandInput, signal: AbortSignal | undefined): Promise<Multipart> {
    try {
      const r = await withRetries(signal, () => client.send(new CreateMultipartUploadCommand(input), aborting(signal)));
      if (r.UploadId === undefined) throw new CofferError("IO", `[s3] ${s.display}: the server gave no upload ID for key "${input.Key}"`);
      return new Multipart(client, s, input.Key as string, r.UploadId);
    } catch (e) {
      throw s3Error(e, s, "write", input.Key, signal);
    }
  }

  /** Starts sending the next part; `done` once it is sent or failed. A failure is thrown by the next send() or complete(). */
  send(body: Uint8Array, signal: AbortSignal | undefined, done: () => void): void {
    if (this.#failed !== undefined) {
      done();
      throw this.#failed;
    }
    const PartNumber = this.#parts.length + 1;
    const p = withRetries(signal, () =>
      this.client.send(
        new UploadPartCommand({ Bucket: this.s.bucket, Key: this.key, UploadId: this.uploadId, PartNumber, Body: body, ContentLength: body.byteLength, ContentMD5: md5(body) }),
        aborting(signal),
      ),
    )
      .then((r) => ({ PartNumber, ETag: r.ETag }))
      .catch((e: unknown) => {
        this.#failed ??= s3Error(e, this.s, "write", this.key, signal);
        throw this.#failed;
      })
      .finally(done);
    p.catch(() => {});
    this.#parts.push(p);
  }

  async complete(signal: AbortSignal | undefined): Promise<void> {
    const parts = await Promise.all(this.#parts);
    try {
      await withRetries(signal, () =>
        this.client.send(new CompleteMultipartUploadCommand({ Bucket: this.s.bucket, Key: this.key, UploadId: this.uploadId, MultipartUpload: { Parts: parts } }), aborting(signal)),
      );
    } catch (e) {
      throw s3Error(e, this.s, "write", this.key, signal);
    }
  }

  /** Drops the upload and its parts (best effort: a server that keeps them lets a lifecycle rule remove them). */
  async abort(): Promise<void> {
    await Promise.allSettled(this.#parts);
    await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.s.bucket, Key: this.key, UploadId: this.uploadId })).catch(() => {});
  }
}

/** Reads content pieces into parts (copies: a piece's bytes are the caller's), zero pieces as zeros, checking that they follow each other. */
class PartReader {
  #at = 0;
  /** Bytes given out in parts so far. */
  done = 0;
  #rest: { data: Uint8Array | undefined; length: number } | undefined;
  #ended = false;

  constructor(
    private readonly it: AsyncIterator<ContentPiece>,
    private readonly key: string,
  ) {}

  /**
   * The next part: `size` bytes, or fewer when the content ends (then
   * `last`); its buffer grows from `expected` bytes (the record's size), so
   * that a small file takes no whole part.
   */
  async fill(size: number, expected: number, signal: AbortSignal | undefined): Promise<{ bytes: Uint8Array; last: boolean }> {
    let buf = new Uint8Array(Math.min(size, Math.max(expected, 64 * 1024)));
    let n = 0;
    while (n < size && (await this.#more(signal))) {
      const r = this.#rest!;
      const take = Math.min(size - n, r.length);
      if (n + take > buf.byteLength) {
        const grown = new Uint8Array(Math.min(size, Math.max(n + take, buf.byteLength * 2)));
        grown.set(buf.subarray(0, n));
        buf = grown;
      }
      if (r.data !== undefined) buf.set(r.data.subarray(0, take), n);
      n += take;
      this.#rest = take === r.length ? undefined : { data: r.data?.subarray(take), length: r.length - take };
    }
    this.done += n;
    return { bytes: buf.subarray(0, n), last: !(await this.#more(signal)) };
  }

  /** Whether content is left, reading the next piece (skipping empty ones) when the last is used up. */
  async #more(signal: AbortSignal | undefined): Promise<boolean> {
    while (this.#rest === undefined && !this.#ended) {
      throwIfAborted(signal);
      const r = await this.it.next();
      throwIfAborted(signal);
      if (r.done === true) {
        this.#ended = true;
        break;
      }
      const p = r.value;
      if (p.offset !== this.#at) throw new CofferError("IO", `content of key "${this.key}": a piece at offset ${p.offset} where ${this.#at} was expected`);
      this.#at += p.length;
      if (p.length > 0) this.#rest = { data: p.zero === true ? undefined : p.data, length: p.length };
    }
    return this.#rest !== undefined;
  }
}

/** Part buffers lent out at once. */
class Budget {
  #free: number;
  readonly #waiting: (() => void)[] = [];

  constructor(n: number) {
    this.#free = n;
  }

  async take(signal: AbortSignal | undefined): Promise<void> {
    throwIfAborted(signal);
    if (this.#free > 0) {
      this.#free--;
      return;
    }
    await new Promise<void>((resolve, reject) => {
      const onAbort = () => {
        const i = this.#waiting.indexOf(wake);
        if (i >= 0) this.#waiting.splice(i, 1);
        reject(abortError(signal));
      };
      const wake = () => {
        signal?.removeEventListener("abort", onAbort);
        resolve();
      };
      this.#waiting.push(wake);
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  give(): void {
    const next = this.#waiting.shift();
    if (next !== undefined) next();
    else this.#free++;
  }
}

/** Nanoseconds as decimal seconds with nine digits of fraction: "1700000000.123456789", "-1.500000000". */
function mtimeText(ns: bigint): string {
  const abs = ns < 0n ? -ns : ns;
  return `${ns < 0n ? "-" : ""}${abs / 1_000_000_000n}.${(abs % 1_000_000_000n).toString().padStart(9, "0")}`;
}

function md5(b: Uint8Array): string {
  return createHash("md5").update(b).digest("base64");
}
