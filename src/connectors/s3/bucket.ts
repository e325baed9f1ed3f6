/**
 * What the S3 store, importer and exporter ask of a bucket: whether it is there,
 * making it, and listing every object under a prefix.
 */
import { type _Object, CreateBucketCommand, HeadBucketCommand, ListObjectsCommand, ListObjectsV2Command, type S3Client } from "@aws-sdk/client-s3";
import { throwIfAborted } from "../../util/errors.js";
import { s3Code, s3Error, withRetries } from "./requests.js";
import type { S3Settings } from "./settings.js";

/** The SDK's per-request options for a call's signal. */
export function aborting(signal: AbortSignal | undefined): { abortSignal?: AbortSignal } {
  return signal !== undefined ? { abortSignal: signal } : {};
}

/** Whether the bucket exists; refused credentials and other failures are errors naming it. */
export async function bucketExists(client: S3Client, s: S3Settings, signal: AbortSignal | undefined): Promise<boolean> {
  try {
    await withRetries(signal, () => client.send(new HeadBucketCommand({ Bucket: s.bucket }), aborting(signal)));
    return true;
  } catch (e) {
    const c = s3Code(e);
    if (c.status === 404 || c.name === "NoSuchBucket" || c.name === "NotFound") return false;
    // A HEAD has no body: a 403 comes without its code.
    if (c.status === 403) throw s3Error({ ...(e as object), Code: "AccessDenied" }, s, "read", undefined, signal);
    throw s3Error(e, s, "check", undefined, signal);
  }
}

/** Makes the bucket (in the settings' region); one that another client made meanwhile is fine. */
export async function createBucket(client: S3Client, s: S3Settings, signal: AbortSignal | undefined): Promise<void> {
  try {
    await withRetries(signal, () =>
      client.send(
        new CreateBucketCommand({
          Bucket: s.bucket,
          ...(s.region !== "us-east-1" ? { CreateBucketConfiguration: { LocationConstraint: s.region as never } } : {}),
          ...(s.objectLock !== undefined ? { ObjectLockEnabledForBucket: true } : {}),
        }),
        aborting(signal),
      ),
    );
  } catch (e) {
    if (s3Code(e).name === "BucketAlreadyOwnedByYou") return;
    throw s3Error(e, s, "create", undefined, signal);
  }
}

/**
 * Every object under `prefix`, in the order of their keys, one request per
 * page of up to 1,000 keys (no delimiter: the whole tree in one listing),
 * the next page asked for while this one is used.
 */
export async function* listObjects(client: S3Client, s: S3Settings, prefix: string, signal: AbortSignal | undefined): AsyncGenerator<_Object> {
  const Bucket = s.bucket;
  type Page = { contents: _Object[]; next: string | undefined };
  const page = (at: string | undefined): Promise<Page> =>
    withRetries(signal, async () => {
      if (s.listV1) {
        const r = await client.send(new ListObjectsCommand({ Bucket, Prefix: prefix, ...(at !== undefined ? { Marker: at } : {}) }), aborting(signal));
        const contents = r.Contents ?? [];
        return { contents, next: r.IsTruncated === true ? (r.NextMarker ?? contents.at(-1)?.Key) : undefined };
      }
      const r = await client.send(new ListObjectsV2Command({ Bucket, Prefix: prefix, ...(at !== undefined ? { ContinuationToken: at } : {}) }), aborting(signal));
      return { contents: r.Contents ?? [], next: r.IsTruncated === true ? r.NextContinuationToken : undefined };
    }).catch((e: unknown) => {
      throw s3Error(e, s, "list", prefix === "" ? undefined : prefix, signal);
    });
  let pending: Promise<Page> | undefined = page(undefined);
  try {
    while (pending !== undefined) {
      const { contents, next }: Page = await pending;
      pending = next !== undefined ? page(next) : undefined;
      // Not unhandled should the consumer stop before awaiting it.
      pending?.catch(() => {});
      for (const o of contents) {
        throwIfAborted(signal);
        yield o;
      }
    }
  } finally {
    pending?.catch(() => {});
  }
}
