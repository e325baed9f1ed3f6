/**
 * The S3 store (type "s3"): a repository under a prefix of a bucket on AWS
 * or any S3-compatible server, laid out as layout.ts says.
 *
 * Every object is one PutObject with Content-Length and Content-MD5 (which
 * Object Lock buckets require), so it is visible whole or not at all. No
 * put replaces an object: `If-None-Match: *` makes the server refuse one
 * that exists, and since a name is the MAC of the content, the one there
 * is kept and the put succeeds. A server that answers the header with
 * NotImplemented gets a HEAD before each put instead, which leaves open a
 * race between two writers of the same name (docs/FORMAT.md). Locks are
 * the exception: a holder rewrites its lock to refresh it, so their puts
 * replace.
 */
import { createHash } from "node:crypto";
import { Readable } from "node:stream";
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  PutObjectCommand,
  type PutObjectCommandInput,
  type S3Client,
} from "@aws-sdk/client-s3";
import { CofferError, CorruptError, NotFoundError, throwIfAborted } from "../../util/errors.js";
import { equalBytes, fromHex, toHex } from "../../util/hex.js";
import { Resource, resourceName } from "../flags.js";
import { checkRange, checkResource, collectPut, configChanged, noRepository, rangeWithin, refuseIfReadOnly, repositoryExists, storeMode } from "../store-checks.js";
import type { CallOptions, Mac, Range, StagedPut, StageOptions, Store } from "../store.js";
import { aborting, bucketExists, createBucket, listObjects } from "./bucket.js";
import { makeClient } from "./client.js";
import { CONFIG_KEY, macOfKey, objectKey, resourcePrefix } from "./layout.js";
import { s3Code, s3Error, ShortBody, withRetries } from "./requests.js";
import type { S3Settings } from "./settings.js";

/** Bytes of each buffer stage() copies parts into. */
const STAGE_SLAB = 4 << 20;

/** The name under locks/ that checkDeleteRights deletes: never a lock's (64 hex digits), so never an object. */
const DELETE_CHECK_NAME = "delete-check";

/** The ETag as `If-Match` takes it: unquoted (Ceph), then quoted (AWS, RFC 9110). */
const IF_MATCH_FORMS: readonly ((etag: string) => string)[] = [(etag) => etag.replace(/^"|"$/g, ""), (etag) => (etag.startsWith('"') ? etag : `"${etag}"`)];

export interface S3StoreOptions {
  readOnly?: boolean | undefined;
  /** The run's environment, for the credentials (client.ts). */
  env?: Readonly<Record<string, string | undefined>> | undefined;
}

export class S3Store implements Store {
  readonly origin: string;
  readonly type = "s3";
  readonly root: string;
  readonly flags = 0;
  readonly #s: S3Settings;
  readonly #client: S3Client;
  readonly #readOnly: boolean;
  /** Cleared once the server answers `If-None-Match: *` with NotImplemented. */
  #conditionalPuts = true;
  /** How this server wants If-Match's ETag, once one form worked. */
  #ifMatchForm: ((etag: string) => string) | undefined;

  /** Store.connections: the requests the client keeps open at once. */
  readonly connections: number;

  constructor(settings: S3Settings, opts: S3StoreOptions = {}) {
    this.#s = settings;
    this.root = settings.display;
    this.origin = settings.endpoint ?? "s3.amazonaws.com";
    this.#readOnly = opts.readOnly === true;
    this.#client = makeClient(settings, opts.env ?? {});
    this.connections = settings.connections;
  }

  /** Makes the bucket when it is missing, then writes the config unless one is there. */
  async create(config: Uint8Array, opts: CallOptions = {}): Promise<void> {
    const { signal } = opts;
    throwIfAborted(signal);
    refuseIfReadOnly(this.#readOnly, "s3", this.root, "create");
    if (!(await bucketExists(this.#client, this.#s, signal))) await createBucket(this.#client, this.#s, signal);
    const key = this.#s.prefix + CONFIG_KEY;
    if ((await this.#head(key, signal)) !== undefined) throw repositoryExists(this.root);
    throwIfAborted(signal);
    const created = await this.#put(key, new Uint8Array(config), "STANDARD", signal);
    if (!created) throw repositoryExists(this.root);
  }

  async open(opts: CallOptions = {}): Promise<Uint8Array> {
    const { signal } = opts;
    throwIfAborted(signal);
    const key = this.#s.prefix + CONFIG_KEY;
    try {
      return await this.#get(key, undefined, signal);
    } catch (e) {
      if (e instanceof NotFoundError) throw noRepository(this.root);
      if (e instanceof CofferError && e.data.s3Code === "NoSuchBucket") {
        throw new CofferError("NO_REPOSITORY", `no repository at ${this.root}: bucket "${this.#s.bucket}" does not exist`, { root: this.root, bucket: this.#s.bucket });
      }
      throw e;
    }
  }

  async ping(opts: CallOptions = {}): Promise<void> {
    const { signal } = opts;
    throwIfAborted(signal);
    if (!(await bucketExists(this.#client, this.#s, signal))) throw noRepository(this.root);
  }

  async mode(opts: CallOptions = {}): Promise<number> {
    throwIfAborted(opts.signal);
    return storeMode(this.#readOnly);
  }

  /** Bytes of every object under the prefix, from a listing. */
  async size(opts: CallOptions = {}): Promise<number> {
    const { signal } = opts;
    throwIfAborted(signal);
    let total = 0;
    for await (const o of listObjects(this.#client, this.#s, this.#s.prefix, signal)) total += o.Size ?? 0;
    return total;
  }

  async *list(resource: Resource, opts: CallOptions = {}): AsyncIterable<Mac> {
    const { signal } = opts;
    throwIfAborted(signal);
    const prefix = resourcePrefix(this.#s.prefix, resource);
    for await (const o of listObjects(this.#client, this.#s, prefix, signal)) {
      throwIfAborted(signal);
      const hex = o.Key !== undefined ? macOfKey(prefix, resource, o.Key) : undefined;
      if (hex !== undefined) yield fromHex(hex);
    }
  }

  async put(resource: Resource, mac: Mac, data: Uint8Array | AsyncIterable<Uint8Array>, opts: CallOptions = {}): Promise<number> {
    const { signal } = opts;
    throwIfAborted(signal);
    refuseIfReadOnly(this.#readOnly, "s3", this.root, "put");
    const key = objectKey(this.#s.prefix, resource, mac);
    const body = await collectPut(data, signal);
    throwIfAborted(signal);
    await this.#put(key, body, resource === Resource.PACKFILE ? this.#s.storageClass : "STANDARD", signal, resource === Resource.LOCK);
    return body.byteLength;
  }

  /**
   * Store.stage: the parts are copied as they come (a writer may reuse its
   * buffers once write() resolves) into slabs of STAGE_SLAB bytes, a few
   * allocations a packfile whatever its blobs' sizes, and sent at commit()
   * as one PutObject streamed from them, so a packfile is held once here
   * instead of assembled by the writer and copied again by put().
   */
  async stage(resource: Resource, opts: StageOptions = {}): Promise<StagedPut> {
    throwIfAborted(opts.signal);
    refuseIfReadOnly(this.#readOnly, "s3", this.root, "put");
    checkResource(resource);
    let slabs: Uint8Array[] | null = [];
    /** Bytes used of the last slab. */
    let used = STAGE_SLAB;
    let size = 0;
    const ended = (what: string) => new CofferError("IO", `[s3] staged ${what} in ${this.root} after its end`, { root: this.root });
    return {
      write: async (more) => {
        if (slabs === null) throw ended("write");
        for (const p of more) {
          for (let at = 0; at < p.byteLength; ) {
            if (used === STAGE_SLAB) {
              slabs.push(new Uint8Array(STAGE_SLAB));
              used = 0;
            }
            const n = Math.min(p.byteLength - at, STAGE_SLAB - used);
            slabs.at(-1)!.set(p.subarray(at, at + n), used);
            used += n;
            at += n;
          }
          size += p.byteLength;
        }
      },
      commit: async (mac, o = {}) => {
        if (slabs === null) throw ended("commit");
        const body = slabs.map((slab, i) => (i === slabs!.length - 1 ? slab.subarray(0, used) : slab));
        slabs = null;
        throwIfAborted(o.signal);
        await this.#put(objectKey(this.#s.prefix, resource, mac), body, resource === Resource.PACKFILE ? this.#s.storageClass : "STANDARD", o.signal, resource === Resource.LOCK);
        return size;
      },
      abort: async () => {
        slabs = null;
      },
    };
  }

  async get(resource: Resource, mac: Mac, range?: Range, opts: CallOptions = {}): Promise<Uint8Array> {
    const { signal } = opts;
    throwIfAborted(signal);
    if (range !== undefined) checkRange(range);
    return this.#get(objectKey(this.#s.prefix, resource, mac), range, signal, `${resourceName(resource)} ${toHex(mac)}`);
  }

  /** A HEAD first: S3 answers a DELETE of a missing key with success, and the contract wants NOT_FOUND. */
  async delete(resource: Resource, mac: Mac, opts: CallOptions = {}): Promise<void> {
    const { signal } = opts;
    throwIfAborted(signal);
    refuseIfReadOnly(this.#readOnly, "s3", this.root, "delete");
    const key = objectKey(this.#s.prefix, resource, mac);
    if ((await this.#head(key, signal)) === undefined) throw new NotFoundError(`${resourceName(resource)} ${toHex(mac)}`, { resource, mac: toHex(mac) });
    throwIfAborted(signal);
    await this.#send("delete", key, signal, (abortSignal) => this.#client.send(new DeleteObjectCommand({ Bucket: this.#s.bucket, Key: key }), aborting(abortSignal)));
  }

  /**
   * Puts `config` over the configuration if it still is `expected`, by a
   * PutObject conditional on the ETag read (`If-Match`), atomic as every
   * PutObject is. Ceph 16 compares If-Match with the ETag unquoted and AWS
   * as sent, so a refusal while the configuration is still `expected` tries
   * the other form; a server that honours neither gets a comparison then a
   * plain put, which leaves a race open (docs/FORMAT.md).
   */
  async replaceConfig(config: Uint8Array, expected: Uint8Array, opts: CallOptions = {}): Promise<void> {
    const { signal } = opts;
    throwIfAborted(signal);
    refuseIfReadOnly(this.#readOnly, "s3", this.root, "replace the configuration");
    const key = this.#s.prefix + CONFIG_KEY;
    const head = await this.#headObject(key, signal);
    if (head === undefined) throw noRepository(this.root);
    if (!equalBytes(await this.#get(key, undefined, signal), expected)) throw configChanged(this.root);
    const body = new Uint8Array(config);
    const etag = head.etag;
    const forms = etag === undefined ? [] : this.#ifMatchForm !== undefined ? [this.#ifMatchForm] : IF_MATCH_FORMS;
    for (const form of forms) {
      try {
        await this.#putConfig(key, body, { IfMatch: form(etag!) }, signal);
        this.#ifMatchForm = form;
        return;
      } catch (e) {
        const c = s3Code(e);
        if (c.status === 501 || c.name === "NotImplemented") break;
        if (c.status !== 412 && c.name !== "PreconditionFailed") throw s3Error(e, this.#s, "write", key, signal);
        // Refused: replaced meanwhile, landed already (a retry of a put whose answer was lost), or the form is not the server's.
        const now = await this.#get(key, undefined, signal);
        if (equalBytes(now, body)) return;
        if (!equalBytes(now, expected)) throw configChanged(this.root);
      }
    }
    await this.#putConfig(key, body, {}, signal);
  }

  async #putConfig(key: string, body: Uint8Array, condition: Partial<PutObjectCommandInput>, signal: AbortSignal | undefined): Promise<void> {
    const input: PutObjectCommandInput = { Bucket: this.#s.bucket, Key: key, Body: body, ContentLength: body.byteLength, ContentMD5: createHash("md5").update(body).digest("base64"), ...this.#encryption(), ...this.#retention(), ...condition };
    await withRetries(signal, () => this.#client.send(new PutObjectCommand(input), aborting(signal)));
  }

  /**
   * A DELETE of a key that is never an object (S3 answers a missing key
   * with success): a policy that denies s3:DeleteObject refuses it.
   */
  async checkDeleteRights(opts: CallOptions = {}): Promise<void> {
    const { signal } = opts;
    throwIfAborted(signal);
    refuseIfReadOnly(this.#readOnly, "s3", this.root, "delete");
    const key = resourcePrefix(this.#s.prefix, Resource.LOCK) + DELETE_CHECK_NAME;
    try {
      await withRetries(signal, () => this.#client.send(new DeleteObjectCommand({ Bucket: this.#s.bucket, Key: key }), aborting(signal)));
    } catch (e) {
      const c = s3Code(e);
      if (c.status === 403 || c.name === "AccessDenied") {
        throw new CofferError("READ_ONLY", `[s3] ${this.root}: the credentials may not delete objects in bucket "${this.#s.bucket}" (append-only)`, { location: this.root, bucket: this.#s.bucket, key }, { cause: e });
      }
      throw s3Error(e, this.#s, "delete", key, signal);
    }
  }

  async close(): Promise<void> {
    this.#client.destroy();
  }

  /** Sends one request with retries; a failure becomes the CofferError naming `op` and `key`. */
  async #send<T>(op: string, key: string | undefined, signal: AbortSignal | undefined, request: (signal: AbortSignal | undefined) => Promise<T>): Promise<T> {
    try {
      return await withRetries(signal, () => request(signal));
    } catch (e) {
      throw s3Error(e, this.#s, op, key, signal);
    }
  }

  /** The size of `key`, or undefined when there is none. */
  async #head(key: string, signal: AbortSignal | undefined): Promise<number | undefined> {
    return (await this.#headObject(key, signal))?.size;
  }

  /** The size and ETag of `key`, or undefined when there is none. */
  async #headObject(key: string, signal: AbortSignal | undefined): Promise<{ size: number; etag: string | undefined } | undefined> {
    try {
      const r = await withRetries(signal, () => this.#client.send(new HeadObjectCommand({ Bucket: this.#s.bucket, Key: key }), aborting(signal)));
      return { size: r.ContentLength ?? 0, etag: r.ETag };
    } catch (e) {
      const c = s3Code(e);
      if (c.status === 404 || c.name === "NotFound" || c.name === "NoSuchKey") return undefined;
      throw s3Error(e, this.#s, "read", key, signal);
    }
  }

  /**
   * One PutObject of `body` that never replaces an object, unless `replace`;
   * resolves false when `key` was there already (and is kept).
   */
  /** One PutObject of `body` (or its parts, in order, streamed from them afresh on each try); false when the object was there already. */
  async #put(key: string, body: Uint8Array | readonly Uint8Array[], storageClass: string | undefined, signal: AbortSignal | undefined, replace = false): Promise<boolean> {
    const parts = body instanceof Uint8Array ? [body] : body;
    const md5 = createHash("md5");
    for (const p of parts) md5.update(p);
    const bodyOf = () => (parts.length <= 1 ? (parts[0] ?? new Uint8Array(0)) : Readable.from(parts, { objectMode: false }));
    const input: PutObjectCommandInput = {
      Bucket: this.#s.bucket,
      Key: key,
      ContentLength: parts.reduce((n, p) => n + p.byteLength, 0),
      ContentMD5: md5.digest("base64"),
      ...(storageClass !== undefined && storageClass !== "STANDARD" ? { StorageClass: storageClass as never } : {}),
      ...this.#encryption(),
      ...this.#retention(),
    };
    for (;;) {
      if (!replace && !this.#conditionalPuts && (await this.#head(key, signal)) !== undefined) return false;
      const conditional = !replace && this.#conditionalPuts;
      try {
        await withRetries(signal, () => this.#client.send(new PutObjectCommand({ ...input, Body: bodyOf(), ...(conditional ? { IfNoneMatch: "*" } : {}) }), aborting(signal)));
        return true;
      } catch (e) {
        const c = s3Code(e);
        if (c.status === 412 || c.name === "PreconditionFailed") return false;
        // Another conditional put of the same key in flight (AWS): the other one wins.
        if (c.status === 409 && c.name === "ConditionalRequestConflict") return false;
        if (conditional && (c.status === 501 || c.name === "NotImplemented")) {
          this.#conditionalPuts = false;
          continue;
        }
        throw s3Error(e, this.#s, "write", key, signal);
      }
    }
  }

  #encryption(): Partial<PutObjectCommandInput> {
    const sse = this.#s.sse;
    if (sse === undefined) return {};
    return { ServerSideEncryption: sse.algorithm, ...(sse.kmsKeyId !== undefined ? { SSEKMSKeyId: sse.kmsKeyId } : {}) };
  }

  #retention(): Partial<PutObjectCommandInput> {
    const lock = this.#s.objectLock;
    if (lock === undefined) return {};
    return { ObjectLockMode: lock.mode, ObjectLockRetainUntilDate: new Date(Date.now() + lock.days * 86_400_000) };
  }

  /**
   * The bytes of `key`, or of `range` of it: exactly those, or an error.
   * Every response body is read to its end or destroyed, since an unread
   * one keeps its connection. A zero-length range is a HEAD, as HTTP has no
   * empty byte range.
   */
  async #get(key: string, range: Range | undefined, signal: AbortSignal | undefined, what = key): Promise<Uint8Array> {
    const notFound = () => new NotFoundError(what, { key, bucket: this.#s.bucket });
    if (range !== undefined && range.length === 0) {
      const size = await this.#head(key, signal);
      if (size === undefined) throw notFound();
      rangeWithin(range, size, what, { key, size });
      return new Uint8Array(0);
    }
    try {
      return await withRetries(signal, async () => {
        const r = await this.#client.send(
          new GetObjectCommand({ Bucket: this.#s.bucket, Key: key, ...(range !== undefined ? { Range: `bytes=${range.offset}-${range.offset + range.length - 1}` } : {}) }),
          aborting(signal),
        );
        const body = r.Body as Readable | undefined;
        const expected = range !== undefined ? range.length : (r.ContentLength ?? 0);
        if (body === undefined) {
          if (expected === 0) return new Uint8Array(0);
          throw new ShortBody(`no body (${expected} bytes expected)`);
        }
        if (range !== undefined) {
          const total = /\/(\d+)$/.exec(r.ContentRange ?? "")?.[1];
          if (r.ContentLength !== undefined && r.ContentLength < range.length) {
            body.destroy();
            throw new CorruptError(what, `range ${range.offset}+${range.length} past the end (${total ?? "?"} bytes)`, { key, size: total === undefined ? undefined : Number(total) });
          }
        }
        return readExactly(body, expected, signal);
      });
    } catch (e) {
      const c = s3Code(e);
      if (c.status === 404 && c.name !== "NoSuchBucket") throw notFound();
      if (c.status === 416 || c.name === "InvalidRange") {
        const size = await this.#head(key, signal);
        if (size === undefined) throw notFound();
        throw new CorruptError(what, `range ${range?.offset ?? 0}+${range?.length ?? 0} past the end (${size} bytes)`, { key, size });
      }
      throw s3Error(e, this.#s, "read", key, signal);
    }
  }

}

/** Reads `body` whole into exactly `length` bytes: a body that ends short is a ShortBody (retried), a longer one CORRUPT. */
async function readExactly(body: Readable, length: number, signal: AbortSignal | undefined): Promise<Uint8Array> {
  const out = new Uint8Array(length);
  let at = 0;
  const onAbort = () => body.destroy();
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    for await (const chunk of body as AsyncIterable<Uint8Array>) {
      if (at + chunk.byteLength > length) throw new CorruptError("s3 response", `body longer than the ${length} bytes announced`);
      out.set(chunk, at);
      at += chunk.byteLength;
    }
  } finally {
    signal?.removeEventListener("abort", onAbort);
    body.destroy();
  }
  if (at < length) throw new ShortBody(`body ended after ${at} of ${length} bytes`);
  return out;
}
