/**
 * The content of one object as the S3 importer reads it: a streamed
 * GetObject of the version it listed (`If-Match` its ETag, so that what is
 * read is what size, mtime and tag were recorded for), resumed with a
 * ranged GET from where it stopped when the connection drops. The body is
 * always read to its end or destroyed (an unread one keeps its socket).
 */
import type { Readable } from "node:stream";
import { GetObjectCommand, type S3Client } from "@aws-sdk/client-s3";
import { abortError, CofferError } from "../../util/errors.js";
import { aborting } from "./bucket.js";
import { s3Code, s3Error, withRetries } from "./requests.js";
import type { S3Settings } from "./settings.js";

/** Bodies that break off once begun are taken up again this many times. */
const MAX_RESUMES = 5;

/** The object as it was listed. */
export interface ListedObject {
  key: string;
  size: number;
  etag: string | undefined;
}

/** The bytes of `o`: exactly its listed size, or an IO error naming the key. */
export async function* readObject(client: S3Client, s: S3Settings, o: ListedObject, signal: AbortSignal | undefined): AsyncGenerator<Uint8Array> {
  let at = 0;
  for (let resumes = 0; ; resumes++) {
    const body = await openBody(client, s, o, at, signal);
    try {
      for await (const chunk of body as AsyncIterable<Uint8Array>) {
        if (at + chunk.byteLength > o.size) throw changed(s, o, `it holds more than the ${o.size} bytes listed`);
        at += chunk.byteLength;
        yield chunk;
      }
      if (at === o.size) return;
      if (resumes >= MAX_RESUMES) throw changed(s, o, `its content ended after ${at} of ${o.size} bytes`);
    } catch (e) {
      if (signal?.aborted) throw abortError(signal);
      if (e instanceof CofferError || resumes >= MAX_RESUMES) throw asIo(s3Error(e, s, "read", o.key, signal));
    } finally {
      body.destroy();
    }
  }
}

async function openBody(client: S3Client, s: S3Settings, o: ListedObject, at: number, signal: AbortSignal | undefined): Promise<Readable> {
  try {
    const r = await withRetries(signal, () =>
      client.send(
        new GetObjectCommand({ Bucket: s.bucket, Key: o.key, ...(o.etag !== undefined ? { IfMatch: o.etag } : {}), ...(at > 0 ? { Range: `bytes=${at}-` } : {}) }),
        aborting(signal),
      ),
    );
    const body = r.Body as Readable | undefined;
    if (body === undefined) throw changed(s, o, "the server sent no content");
    return body;
  } catch (e) {
    const c = s3Code(e);
    if (c.status === 412 || c.name === "PreconditionFailed") throw changed(s, o, "it was replaced since it was listed");
    if (c.name === "NoSuchKey" || (c.status === 404 && c.name !== "NoSuchBucket")) throw changed(s, o, "it was deleted since it was listed");
    throw asIo(s3Error(e, s, "read", o.key, signal));
  }
}

function changed(s: S3Settings, o: ListedObject, why: string): CofferError {
  return new CofferError("IO", `[s3] ${s.display}: key "${o.key}" in bucket "${s.bucket}": ${why}`, { location: s.display, bucket: s.bucket, key: o.key });
}

/** A read that fails is the entry's error (IO), not the backup's, whatever the server said. */
function asIo(e: CofferError): CofferError {
  return e.code === "IO" || e.code === "INTERRUPTED" ? e : new CofferError("IO", e.message, { ...e.data }, { cause: e });
}
