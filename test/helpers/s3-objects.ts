/**
 * Objects on the test radosgw, seen without coffer's code: a plain SDK
 * client, writing objects, and reading a prefix back as the tree the S3
 * importer and exporter mean by it (keys as files, the `/` in them as
 * directories, empty `DIR/` objects as empty directories, the `mtime`
 * metadata as the files' mtimes).
 */
import { createHash } from "node:crypto";
import type { Readable } from "node:stream";
import { CreateBucketCommand, GetObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client, type _Object } from "@aws-sdk/client-s3";
import type { ExpectedEntry } from "../../src/sdk/kits/index.js";
import type { Radosgw } from "./radosgw.js";

export function rawClient(server: Radosgw): S3Client {
  return new S3Client({
    endpoint: server.endpoint,
    region: "us-east-1",
    forcePathStyle: true,
    credentials: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey },
    requestChecksumCalculation: "WHEN_REQUIRED",
    responseChecksumValidation: "WHEN_REQUIRED",
  });
}

export async function makeBucket(client: S3Client, bucket: string): Promise<void> {
  await client.send(new CreateBucketCommand({ Bucket: bucket }));
}

/** Writes `objects` (key -> content), a few at once. */
export async function putObjects(client: S3Client, bucket: string, objects: ReadonlyMap<string, Uint8Array | string>): Promise<void> {
  const all = [...objects];
  for (let i = 0; i < all.length; i += 16) {
    await Promise.all(all.slice(i, i + 16).map(([Key, body]) => client.send(new PutObjectCommand({ Bucket: bucket, Key, Body: typeof body === "string" ? Buffer.from(body) : body }))));
  }
}

/** Every object under `prefix`, from a listing. */
export async function listAll(client: S3Client, bucket: string, prefix: string): Promise<_Object[]> {
  const out: _Object[] = [];
  let token: string | undefined;
  do {
    const r = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ...(token !== undefined ? { ContinuationToken: token } : {}) }));
    out.push(...(r.Contents ?? []));
    token = r.IsTruncated === true ? r.NextContinuationToken : undefined;
  } while (token !== undefined);
  return out;
}

async function readBody(client: S3Client, bucket: string, key: string): Promise<{ sha256: string; size: number; mtime: string | undefined }> {
  const r = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  const hash = createHash("sha256");
  let size = 0;
  for await (const c of r.Body as Readable) {
    hash.update(c as Buffer);
    size += (c as Buffer).byteLength;
  }
  return { sha256: hash.digest("hex"), size, mtime: r.Metadata?.mtime };
}

/** The tree under `prefix` (which ends in `/` or is empty), "/" included; with `content`, each file's digest and `mtime` metadata. */
export async function readTree(client: S3Client, bucket: string, prefix: string, o: { content?: boolean } = {}): Promise<ExpectedEntry[]> {
  const entries = new Map<string, ExpectedEntry>([["/", { pathname: "/", kind: "dir" }]]);
  const dirs = (rel: string) => {
    const parts = rel.split("/");
    for (let i = 1; i < parts.length; i++) {
      const p = `/${parts.slice(0, i).join("/")}`;
      if (!entries.has(p)) entries.set(p, { pathname: p, kind: "dir" });
    }
  };
  const files: ExpectedEntry[] = [];
  for (const obj of await listAll(client, bucket, prefix)) {
    const rel = (obj.Key ?? "").slice(prefix.length);
    if (rel === "") continue;
    if (rel.endsWith("/")) {
      dirs(`${rel}x`);
      continue;
    }
    dirs(rel);
    const e: ExpectedEntry = { pathname: `/${rel}`, kind: "file", size: obj.Size ?? 0 };
    entries.set(e.pathname, e);
    files.push(e);
  }
  if (o.content === true) {
    // Read 16 at once: a listing of a thousand keys is read back in seconds.
    for (let i = 0; i < files.length; i += 16) {
      await Promise.all(
        files.slice(i, i + 16).map(async (e) => {
          const b = await readBody(client, bucket, prefix + e.pathname.slice(1));
          e.sha256 = b.sha256;
          e.size = b.size;
          if (b.mtime !== undefined) e.mtimeNs = mtimeOfMeta(b.mtime);
        }),
      );
    }
  }
  return [...entries.values()];
}

/** The `mtime` metadata ("[-]SECONDS.FRACTION") in ns. */
function mtimeOfMeta(s: string): bigint {
  const [secs, frac = ""] = s.replace(/^-/, "").split(".");
  const ns = BigInt(secs!) * 1_000_000_000n + BigInt(frac.padEnd(9, "0").slice(0, 9));
  return s.startsWith("-") ? -ns : ns;
}
