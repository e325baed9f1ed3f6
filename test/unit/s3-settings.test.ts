/** S3 locations and parameters (src/connectors/location.ts, src/connectors/s3/settings.ts): pure, no server. */
import { describe, expect, it } from "vitest";
import { parseLocation } from "../../src/connectors/location.js";
import { validateConfig } from "../../src/connectors/params.js";
import { S3_PARAMS, s3Settings } from "../../src/connectors/s3/settings.js";

function settings(location: string, cfg: Record<string, string> = {}, env: Record<string, string> = {}) {
  const loc = parseLocation(location, { forStore: true });
  return s3Settings(loc, validateConfig(`store "s3"`, S3_PARAMS, { ...cfg, location: loc.raw }), env);
}

describe("S3 locations", () => {
  it("the first component is the endpoint when it holds a . or :", () => {
    expect(settings("s3+http://127.0.0.1:7480/backups/laptop")).toMatchObject({ endpoint: "http://127.0.0.1:7480", bucket: "backups", prefix: "laptop/", pathStyle: true, aws: false });
    expect(settings("s3://minio.example.org/bkt/a/b")).toMatchObject({ endpoint: "https://minio.example.org", bucket: "bkt", prefix: "a/b/" });
    expect(settings("s3://my-bucket/host/x")).toMatchObject({ endpoint: undefined, bucket: "my-bucket", prefix: "host/x/", pathStyle: false, aws: true, region: "us-east-1" });
    expect(settings("s3://my-bucket")).toMatchObject({ bucket: "my-bucket", prefix: "" });
    expect(settings("s3://s3.eu-west-1.amazonaws.com/my-bucket")).toMatchObject({ aws: true, pathStyle: false });
    // With an endpoint parameter the first component is the bucket, dots and all.
    expect(settings("s3://my.dotted.bucket/p", { endpoint: "http://10.0.0.1:9000" })).toMatchObject({ endpoint: "http://10.0.0.1:9000", bucket: "my.dotted.bucket", prefix: "p/" });
  });

  it("region, TLS, encryption and retention from parameters and the environment", () => {
    expect(settings("s3://bkt1", {}, { AWS_REGION: "eu-central-1" }).region).toBe("eu-central-1");
    expect(settings("s3://bkt1", { region: "us-west-2" }, { AWS_REGION: "eu-central-1" }).region).toBe("us-west-2");
    expect(settings("s3://host:9000/bkt1", { tls: "false" }).endpoint).toBe("http://host:9000");
    expect(settings("s3://bkt1", { sse: "aws:kms:key-1" }).sse).toEqual({ algorithm: "aws:kms", kmsKeyId: "key-1" });
    expect(settings("s3://bkt1", { sse: "AES256" }).sse).toEqual({ algorithm: "AES256", kmsKeyId: undefined });
    expect(settings("s3://bkt1", { object_lock_days: "30", object_lock_mode: "COMPLIANCE" }).objectLock).toEqual({ days: 30, mode: "COMPLIANCE" });
    expect(settings("s3://bkt1").objectLock).toBeUndefined();
    expect(settings("s3://bkt1").connections).toBe(8);
    expect(settings("s3://bkt1").idleTimeoutMs).toBe(60_000);
    expect(settings("s3://bkt1", { idle_timeout: "500ms" }).idleTimeoutMs).toBe(500);
  });

  it("bad locations and parameters are USAGE errors naming them", () => {
    const usage = (f: () => unknown, text: string) => expect(f).toThrow(expect.objectContaining({ code: "USAGE", message: expect.stringContaining(text) }));
    usage(() => settings("s3://"), "names no bucket");
    usage(() => settings("s3+http://127.0.0.1:7480"), "names no bucket");
    usage(() => settings("s3://Not_A_Bucket"), "not a valid bucket name");
    usage(() => settings("s3+http://bkt1"), "plain HTTP needs an endpoint");
    usage(() => settings("s3+http://127.0.0.1:1/bkt1", { tls: "true" }), "tls");
    usage(() => settings("s3://bkt1", { connections: "0" }), "connections");
    usage(() => settings("s3://bkt1", { sse: "rot13" }), "sse");
    usage(() => settings("s3://bkt1", { idle_timeout: "0s" }), "idle_timeout");
    usage(() => settings("s3://bkt1", { idle_timeout: "60" }), "idle_timeout");
    usage(() => settings("s3://bkt1", { bogus: "1" }), "bogus");
  });
});
