/**
 * Runs the Store conformance suite against the S3 store on a real radosgw
 * (test/helpers/radosgw.ts: one cluster per run), each test under a fresh
 * prefix of one bucket, plus what only S3 shows: listings of more than one
 * page, the key layout, and permanent errors that name the bucket and key.
 */
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Resource } from "../../src/connectors/flags.js";
import { parseLocation } from "../../src/connectors/location.js";
import { validateConfig } from "../../src/connectors/params.js";
import { S3_PARAMS, s3Settings } from "../../src/connectors/s3/settings.js";
import { S3Store } from "../../src/connectors/s3/store.js";
import { toHex } from "../../src/util/hex.js";
import { lacks } from "../helpers/prerequisites.js";
import { freshBucketName, hasCeph, type Radosgw, radosgw } from "../helpers/radosgw.js";
import { storeConformance } from "./store.js";

const ceph = !lacks(hasCeph(), "ceph-mon, ceph-osd, radosgw, ceph (Debian's ceph-mon ceph-osd radosgw ceph-common)");

let server: Radosgw;
const bucket = freshBucketName("kit");

function open(location: string, opts: { readOnly?: boolean; config?: Record<string, string>; env?: Record<string, string> } = {}): S3Store {
  const loc = parseLocation(location, { forStore: true });
  const cfg = validateConfig(`store "s3"`, S3_PARAMS, { ...opts.config, location: loc.raw });
  const env = opts.env ?? server.env;
  return new S3Store(s3Settings(loc, cfg, env), { readOnly: opts.readOnly, env });
}

const mac = () => new Uint8Array(randomBytes(32));

describe.skipIf(!ceph)("S3 store on radosgw", () => {
  const stores: S3Store[] = [];
  beforeAll(async () => {
    server = await radosgw();
    // The bucket every fixture shares: create() makes it when it is missing.
    const s = open(`s3+http://${server.hostPort}/${bucket}/setup`);
    await s.create(new Uint8Array([1]));
    await s.close();
  });
  afterAll(async () => {
    for (const s of stores.splice(0)) await s.close();
  });

  storeConformance(
    "s3",
    async () => {
      const location = `s3+http://${server.hostPort}/${bucket}/t-${randomBytes(6).toString("hex")}`;
      const store = open(location);
      const opened = [store];
      return {
        store,
        readOnly: async () => {
          const ro = open(location, { readOnly: true });
          opened.push(ro);
          return ro;
        },
        cleanup: async () => {
          for (const r of [Resource.PACKFILE, Resource.STATE, Resource.LOCK]) {
            for await (const m of store.list(r)) await store.delete(r, m);
          }
          for (const s of opened) await s.close();
        },
      };
    },
    { writeOnce: true, replaceConfig: true, stage: true },
  );

  it("lists more than 1,000 keys, across pages, with the documented layout", async () => {
    const location = `s3+http://${server.hostPort}/${bucket}/many`;
    const store = open(location);
    stores.push(store);
    await store.create(new Uint8Array([7]));
    const macs = Array.from({ length: 1234 }, mac);
    for (let i = 0; i < macs.length; i += 32) await Promise.all(macs.slice(i, i + 32).map((m) => store.put(Resource.STATE, m, new Uint8Array([1]))));
    const listed: string[] = [];
    for await (const m of store.list(Resource.STATE)) listed.push(toHex(m));
    expect(listed.sort()).toEqual(macs.map(toHex).sort());
    // The key of one of them, read with the V1 listing the list_v1 option selects.
    const v1 = open(location, { config: { list_v1: "true" } });
    stores.push(v1);
    let n = 0;
    for await (const _ of v1.list(Resource.STATE)) n++;
    expect(n).toBe(1234);
    const { S3Client, HeadObjectCommand } = await import("@aws-sdk/client-s3");
    const raw = new S3Client({ endpoint: server.endpoint, region: "us-east-1", forcePathStyle: true, credentials: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey } });
    const hex = toHex(macs[0]!);
    for (const key of ["many/config", `many/states/${hex.slice(0, 2)}/${hex}`]) {
      expect((await raw.send(new HeadObjectCommand({ Bucket: bucket, Key: key }))).$metadata.httpStatusCode).toBe(200);
    }
    raw.destroy();
  });

  it("a missing bucket, refused credentials and a missing repository are errors naming the bucket and key", async () => {
    const missing = freshBucketName("missing");
    const noBucket = open(`s3+http://${server.hostPort}/${missing}/p`, { readOnly: true });
    stores.push(noBucket);
    await expect(noBucket.open()).rejects.toMatchObject({ code: "NO_REPOSITORY" });
    const read = await noBucket.get(Resource.PACKFILE, mac()).catch((e: unknown) => e);
    expect(read).toMatchObject({ code: "IO", data: { s3Code: "NoSuchBucket", bucket: missing } });
    expect(String((read as Error).message)).toContain(`bucket "${missing}" does not exist`);

    const wrongKey = open(`s3+http://${server.hostPort}/${bucket}/setup`, { env: { AWS_ACCESS_KEY_ID: "NOSUCHKEY", AWS_SECRET_ACCESS_KEY: "wrong" } });
    stores.push(wrongKey);
    const m = mac();
    const refused = await wrongKey.put(Resource.PACKFILE, m, new Uint8Array([1])).catch((e: unknown) => e);
    expect(refused).toMatchObject({ code: "IO", data: { bucket } });
    expect(String((refused as Error).message)).toMatch(/refused the credentials|access denied/);
    expect(String((refused as Error).message)).toContain(`setup/packfiles/${toHex(m).slice(0, 2)}/${toHex(m)}`);

    const none = open(`s3+http://${server.hostPort}/${bucket}/nothing-here`);
    stores.push(none);
    await expect(none.open()).rejects.toMatchObject({ code: "NO_REPOSITORY" });
  });
});
