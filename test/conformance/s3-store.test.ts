/** The S3 store on a real radosgw (test/helpers/radosgw.ts). */
import { describe, expect, it } from "vitest";
import { lacks } from "../helpers/prerequisites.js";
import { freshBucketName, hasCeph, radosgw } from "../helpers/radosgw.js";

describe.skipIf(lacks(hasCeph(), "ceph-mon, ceph-osd, radosgw, ceph (Debian's ceph-mon ceph-osd radosgw ceph-common)"))("radosgw", () => {
  it("answers S3 requests signed with the test user's keys", async () => {
    const s = await radosgw();
    const { S3Client, CreateBucketCommand, HeadBucketCommand } = await import("@aws-sdk/client-s3");
    const client = new S3Client({ endpoint: s.endpoint, region: "us-east-1", forcePathStyle: true, credentials: { accessKeyId: s.accessKeyId, secretAccessKey: s.secretAccessKey } });
    const bucket = freshBucketName("smoke");
    await client.send(new CreateBucketCommand({ Bucket: bucket }));
    const head = await client.send(new HeadBucketCommand({ Bucket: bucket }));
    expect(head.$metadata.httpStatusCode).toBe(200);
    client.destroy();
  });
});
