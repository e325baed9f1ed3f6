/**
 * The S3 store's parameters (`-o` / `--store-opt`, docs/CLI.md "S3") and
 * the settings they resolve to with the location and the run's
 * environment. Pure: builtins.ts declares the parameters without loading
 * the AWS SDK.
 */
import { CofferError } from "../../util/errors.js";
import { type Location, parseS3Location } from "../location.js";
import { numericValue, type ParamSpec } from "../params.js";

export const S3_PARAMS: readonly ParamSpec[] = [
  { name: "endpoint", type: "string", description: "the S3 endpoint, http(s)://HOST[:PORT] or HOST[:PORT] (default: AWS, or the location's first component when it holds a . or :)" },
  { name: "region", type: "string", description: "the region (default: $AWS_REGION, else us-east-1)" },
  { name: "path_style", type: "string", default: "auto", inclusion: ["auto", "true", "false"], description: "path-style requests, BUCKET in the path (auto: on for a non-AWS endpoint)" },
  { name: "tls", type: "string", default: "auto", inclusion: ["auto", "true", "false"], description: "HTTPS (auto: off for s3+http: locations and http:// endpoints)" },
  { name: "tls_insecure_skip_verify", type: "bool", default: "false", description: "accept any server certificate (for tests)" },
  { name: "ca_file", type: "string", description: "a PEM file of the certificate authorities to trust instead of the system's" },
  { name: "idle_timeout", type: "duration", default: "60s", greaterThan: 0, description: "a request that moves no byte for this long is cancelled and retried" },
  { name: "connections", type: "int", default: "8", greaterThan: 0, lessThan: 257, description: "concurrent requests to the server" },
  { name: "storage_class", type: "string", regex: "[A-Z_]+", description: "the storage class of data packfiles (config, states and locks are always STANDARD)" },
  { name: "sse", type: "string", regex: "AES256|aws:kms(:.+)?", description: "server-side encryption: AES256, aws:kms or aws:kms:KEY_ID" },
  { name: "object_lock_days", type: "int", default: "0", greaterThan: -1, description: "write every object with an Object Lock retention of this many days (0: none)" },
  { name: "object_lock_mode", type: "string", default: "GOVERNANCE", inclusion: ["GOVERNANCE", "COMPLIANCE"], description: "the retention mode of object_lock_days" },
  { name: "list_v1", type: "bool", default: "false", description: "list with ListObjects (v1), for servers without ListObjectsV2 (old Ceph)" },
];

export interface S3Settings {
  /** The endpoint URL, undefined for AWS. */
  endpoint: string | undefined;
  region: string;
  bucket: string;
  /** The key prefix with a trailing `/`, or "". */
  prefix: string;
  pathStyle: boolean;
  insecureSkipVerify: boolean;
  caFile: string | undefined;
  connections: number;
  /** A request whose connection moves no byte for this long is cancelled (and retried: requests.ts). */
  idleTimeoutMs: number;
  storageClass: string | undefined;
  sse: { algorithm: "AES256" | "aws:kms"; kmsKeyId: string | undefined } | undefined;
  objectLock: { days: number; mode: "GOVERNANCE" | "COMPLIANCE" } | undefined;
  listV1: boolean;
  /** The endpoint is AWS's: the SDK's default checksums and virtual-host requests work there. */
  aws: boolean;
  /** How the location reads back, for messages: s3://ENDPOINT/BUCKET/PREFIX. */
  display: string;
}

/** The settings of an S3 location with its validated parameters; conflicting ones are USAGE errors naming them. */
export function s3Settings(loc: Location, cfg: Readonly<Record<string, string>>, env: Readonly<Record<string, string | undefined>>): S3Settings {
  const parsed = parseS3Location(loc, cfg.endpoint !== undefined);
  const given = cfg.endpoint ?? parsed.endpoint;
  const scheme = /^(https?):\/\//i.exec(given ?? "")?.[1]?.toLowerCase();
  let tls = parsed.tls;
  if (scheme !== undefined) tls = scheme === "https";
  if (cfg.tls === "true" || cfg.tls === "false") {
    const wanted = cfg.tls === "true";
    if (wanted && !parsed.tls) throw new CofferError("USAGE", `store "s3": option "tls"=true contradicts the location "${loc.raw}" (s3+http: is plain HTTP)`);
    if (scheme !== undefined && wanted !== (scheme === "https")) throw new CofferError("USAGE", `store "s3": option "tls"=${cfg.tls} contradicts the endpoint "${given}"`);
    tls = wanted;
  }
  const host = given?.replace(/^https?:\/\//i, "").replace(/\/+$/, "");
  if (host === "") throw new CofferError("USAGE", `store "s3": option "endpoint" is empty`);
  const endpoint = host === undefined ? undefined : `${tls ? "https" : "http"}://${host}`;
  if (endpoint === undefined && !tls) throw new CofferError("USAGE", `location "${loc.raw}": plain HTTP needs an endpoint (s3+http://HOST:PORT/BUCKET)`);
  const onAws = host === undefined || /(^|\.)amazonaws\.com(:\d+)?$/i.test(host);
  const region = cfg.region ?? env.AWS_REGION ?? env.AWS_DEFAULT_REGION ?? "us-east-1";
  let sse: S3Settings["sse"];
  if (cfg.sse === "AES256") sse = { algorithm: "AES256", kmsKeyId: undefined };
  else if (cfg.sse !== undefined) sse = { algorithm: "aws:kms", kmsKeyId: cfg.sse.length > "aws:kms:".length ? cfg.sse.slice("aws:kms:".length) : undefined };
  const lockDays = Number(cfg.object_lock_days ?? "0");
  const prefix = parsed.prefix === "" ? "" : `${parsed.prefix}/`;
  return {
    endpoint,
    region,
    bucket: parsed.bucket,
    prefix,
    pathStyle: cfg.path_style === "true" || ((cfg.path_style ?? "auto") === "auto" && !onAws),
    insecureSkipVerify: cfg.tls_insecure_skip_verify === "true",
    caFile: cfg.ca_file,
    connections: Number(cfg.connections ?? "8"),
    idleTimeoutMs: numericValue("duration", cfg.idle_timeout ?? "60s"),
    storageClass: cfg.storage_class,
    sse,
    objectLock: lockDays > 0 ? { days: lockDays, mode: cfg.object_lock_mode === "COMPLIANCE" ? "COMPLIANCE" : "GOVERNANCE" } : undefined,
    listV1: cfg.list_v1 === "true",
    aws: onAws,
    display: `${tls ? "s3" : "s3+http"}://${host !== undefined ? `${host}/` : ""}${parsed.bucket}${parsed.prefix !== "" ? `/${parsed.prefix}` : ""}`,
  };
}
