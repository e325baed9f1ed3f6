/**
 * The S3 client of a store: the AWS SDK's S3Client set up from S3Settings
 * (endpoint, path style, TLS, connections, checksums) with the SDK's own
 * retries off, since requests.ts retries with bounds of its own.
 */
import { readFileSync } from "node:fs";
import { Agent as HttpAgent } from "node:http";
import { Agent as HttpsAgent } from "node:https";
import { S3Client } from "@aws-sdk/client-s3";
import { CofferError } from "../../util/errors.js";
import type { S3Settings } from "./settings.js";

const CONNECT_TIMEOUT_MS = 10_000;

export function makeClient(s: S3Settings, env: Readonly<Record<string, string | undefined>>): S3Client {
  let ca: string | undefined;
  if (s.caFile !== undefined) {
    try {
      ca = readFileSync(s.caFile, "utf8");
    } catch (e) {
      throw new CofferError("USAGE", `store "s3": option "ca_file": cannot read ${s.caFile}: ${(e as Error).message}`, { path: s.caFile });
    }
  }
  const agent = { keepAlive: true, maxSockets: s.connections };
  return new S3Client({
    region: s.region,
    ...(s.endpoint !== undefined ? { endpoint: s.endpoint } : {}),
    forcePathStyle: s.pathStyle,
    ...credentialsFrom(env),
    maxAttempts: 1,
    // The SDK's default CRC32 headers break Ceph, MinIO and R2: only where AWS requires them.
    ...(s.aws ? {} : { requestChecksumCalculation: "WHEN_REQUIRED", responseChecksumValidation: "WHEN_REQUIRED" }),
    requestHandler: {
      connectionTimeout: CONNECT_TIMEOUT_MS,
      // A connection that moves no byte for this long is dropped, and the request retried.
      socketTimeout: s.idleTimeoutMs,
      httpAgent: new HttpAgent(agent),
      httpsAgent: new HttpsAgent({ ...agent, rejectUnauthorized: !s.insecureSkipVerify, ...(ca !== undefined ? { ca } : {}) }),
    },
  });
}

/**
 * Keys given in the run's environment are used as they are; otherwise the
 * SDK's default chain finds them (AWS_PROFILE and the shared credentials
 * and config files, SSO, the instance's role).
 */
function credentialsFrom(env: Readonly<Record<string, string | undefined>>): { credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string } } {
  const accessKeyId = env.AWS_ACCESS_KEY_ID;
  const secretAccessKey = env.AWS_SECRET_ACCESS_KEY;
  if (accessKeyId === undefined || accessKeyId === "" || secretAccessKey === undefined) return {};
  const sessionToken = env.AWS_SESSION_TOKEN;
  return { credentials: { accessKeyId, secretAccessKey, ...(sessionToken !== undefined && sessionToken !== "" ? { sessionToken } : {}) } };
}
