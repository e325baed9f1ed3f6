/**
 * The S3 tests' server: a single-node Ceph cluster with radosgw on
 * 127.0.0.1 (test/helpers/radosgw.sh says how it is set up and what it
 * takes to start). It starts in about 11 s and takes about 770 MB, so there
 * is one per test run, shared by every test file that asks for it: the
 * first one starts it under a lock in the run's directory
 * (COFFER_TEST_CACHE_HOME, test/helpers/global-cache.ts) and the others
 * read its address there. No file stops it, as none knows it is the last:
 * the script watches the run's main process (the parent of the test
 * workers) and kills the daemons by their PIDs once it is gone, whether the
 * run ended or died. A lock in a globalSetup would start it for runs that
 * have no S3 test. Outside a vitest run it watches the test process.
 */
import { spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { promises as fsp } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";

const SCRIPT = fileURLToPath(new URL("./radosgw.sh", import.meta.url));
const DAEMON_SCRIPT = fileURLToPath(new URL("./radosgw-daemon.sh", import.meta.url));
const ACCESS_KEY = "COFFERTESTACCESSKEY0";
const SECRET_KEY = "coffer-test-secret-key-0123456789abcdef";
/** The bucket owner's user (radosgw.sh). */
const OWNER_USER = "coffer";
/** The second user's (radosgw.sh), which has only what a bucket policy grants it. */
const APPEND_USER = "coffer-append";
const APPEND_ACCESS_KEY = "COFFERTESTAPPENDKEY0";
const APPEND_SECRET_KEY = "coffer-test-append-secret-0123456789abc";
const START_TIMEOUT_MS = 120_000;

export interface Radosgw {
  /** http://127.0.0.1:PORT */
  endpoint: string;
  /** host:port, for s3+http:// locations. */
  hostPort: string;
  accessKeyId: string;
  secretAccessKey: string;
  /** The credentials as the AWS environment variables, for CLI runs. */
  env: Record<string, string>;
  /**
   * A second user with no rights of its own, for append-only tests: a
   * bucket policy by the owner grants it what it may do (appendOnlyPolicy).
   */
  appendOnly: { user: string; env: Record<string, string> };
  /** The cluster's ceph.conf, for more daemons on it (ownRadosgw). */
  conf: string;
}

/**
 * A bucket policy that lets the append-only user get, put and list in
 * `bucket` but never delete, and the owner read what that user wrote (on
 * Ceph an object belongs to its writer): the Ceph sample in docs/CLI.md,
 * "Append-only credentials", as PutBucketPolicy takes it.
 */
export function appendOnlyPolicy(bucket: string): string {
  const appender = { AWS: [`arn:aws:iam:::user/${APPEND_USER}`] };
  const owner = { AWS: [`arn:aws:iam:::user/${OWNER_USER}`] };
  return JSON.stringify({
    Version: "2012-10-17",
    Statement: [
      { Effect: "Allow", Principal: appender, Action: ["s3:ListBucket", "s3:GetBucketLocation"], Resource: [`arn:aws:s3:::${bucket}`] },
      { Effect: "Allow", Principal: appender, Action: ["s3:GetObject", "s3:PutObject"], Resource: [`arn:aws:s3:::${bucket}/*`] },
      { Effect: "Deny", Principal: appender, Action: ["s3:DeleteObject", "s3:DeleteObjectVersion"], Resource: [`arn:aws:s3:::${bucket}/*`] },
      { Effect: "Allow", Principal: owner, Action: ["s3:GetObject"], Resource: [`arn:aws:s3:::${bucket}/*`] },
    ],
  });
}

/** Whether Debian's Ceph packages are installed (.ci/run installs them). */
export function hasCeph(): boolean {
  return ["ceph-mon", "ceph-osd", "radosgw", "radosgw-admin", "ceph"].every((c) => spawnSync("sh", ["-c", `command -v ${c}`]).status === 0);
}

let shared: Promise<Radosgw> | undefined;

/** The run's radosgw, started by the first caller of the run. */
export function radosgw(): Promise<Radosgw> {
  shared ??= startOrJoin();
  return shared;
}

/** A bucket name no other test uses. */
export function freshBucketName(what: string): string {
  return `coffer-${what}-${randomBytes(6).toString("hex")}`;
}

function server(port: number, conf: string): Radosgw {
  const hostPort = `127.0.0.1:${port}`;
  return {
    endpoint: `http://${hostPort}`,
    hostPort,
    accessKeyId: ACCESS_KEY,
    secretAccessKey: SECRET_KEY,
    env: { AWS_ACCESS_KEY_ID: ACCESS_KEY, AWS_SECRET_ACCESS_KEY: SECRET_KEY, AWS_REGION: "us-east-1" },
    conf,
    appendOnly: { user: APPEND_USER, env: { AWS_ACCESS_KEY_ID: APPEND_ACCESS_KEY, AWS_SECRET_ACCESS_KEY: APPEND_SECRET_KEY, AWS_REGION: "us-east-1" } },
  };
}

async function startOrJoin(): Promise<Radosgw> {
  const runDir = process.env.COFFER_TEST_CACHE_HOME;
  const stateDir = runDir ?? (await fsp.mkdtemp(path.join(tmpdir(), "coffer-radosgw-state-")));
  const watchPid = runDir !== undefined ? process.ppid : process.pid;
  const lock = path.join(stateDir, "radosgw.lock");
  const info = path.join(stateDir, "radosgw.json");
  const won = await fsp.mkdir(lock).then(
    () => true,
    (e: unknown) => {
      if ((e as NodeJS.ErrnoException).code === "EEXIST") return false;
      throw e;
    },
  );
  if (won) {
    const { port, conf } = await start(watchPid);
    await fsp.writeFile(`${info}.tmp`, JSON.stringify({ port, conf }));
    await fsp.rename(`${info}.tmp`, info);
    return server(port, conf);
  }
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    const text = await fsp.readFile(info, "utf8").catch(() => undefined);
    if (text !== undefined) {
      const { port, conf } = JSON.parse(text) as { port: number; conf: string };
      return server(port, conf);
    }
    if (Date.now() > deadline) throw new Error(`radosgw: another test file started it but it was not ready within ${START_TIMEOUT_MS / 1000} s (${info})`);
    await sleep(200);
  }
}

/** Starts the cluster; resolves with radosgw's port and the cluster's ceph.conf once S3 answers. */
async function start(watchPid: number): Promise<{ port: number; conf: string }> {
  const [monPort, rgwPort] = [await freePort(), await freePort()];
  const dir = await fsp.mkdtemp(path.join(tmpdir(), "coffer-radosgw-"));
  // Detached: it must outlive this test file, and it ends itself (see above).
  const child = spawn("bash", [SCRIPT, dir, String(monPort), String(rgwPort), String(watchPid), ACCESS_KEY, SECRET_KEY, APPEND_ACCESS_KEY, APPEND_SECRET_KEY], { detached: true, stdio: "ignore" });
  child.unref();
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    const failed = await fsp.readFile(`${dir}.failed`, "utf8").catch(() => undefined);
    if (failed !== undefined) {
      await fsp.rm(`${dir}.failed`, { force: true });
      throw new Error(`radosgw did not start: ${failed}`);
    }
    if ((await exists(path.join(dir, "ready"))) && (await answers(rgwPort))) return { port: rgwPort, conf: path.join(dir, "ceph.conf") };
    if (Date.now() > deadline) {
      if (child.pid !== undefined) process.kill(child.pid, "SIGTERM");
      throw new Error(`radosgw did not answer within ${START_TIMEOUT_MS / 1000} s (logs in ${dir}/log)`);
    }
    await sleep(250);
  }
}

/**
 * A radosgw daemon of the calling test file's own on the run's cluster (the
 * same users and buckets), on a port of its own: stop() kills it at once,
 * as a crash would, and start() brings it back on the same port, while the
 * cluster and the other files' radosgw stay up. A watchdog
 * (radosgw-daemon.sh) kills it if the test process dies.
 */
export interface OwnRadosgw {
  endpoint: string;
  hostPort: string;
  start(): Promise<void>;
  stop(): Promise<void>;
}

export async function ownRadosgw(cluster: Radosgw): Promise<OwnRadosgw> {
  const port = await freePort();
  const name = `client.rgw-${randomBytes(4).toString("hex")}`;
  let daemon: ReturnType<typeof spawn> | undefined;
  let exited: Promise<void> = Promise.resolve();
  const own: OwnRadosgw = {
    endpoint: `http://127.0.0.1:${port}`,
    hostPort: `127.0.0.1:${port}`,
    async start() {
      if (daemon !== undefined) throw new Error("radosgw: already started");
      const child = spawn("bash", [DAEMON_SCRIPT, cluster.conf, name, String(port), String(process.pid)], { stdio: "ignore" });
      daemon = child;
      exited = new Promise((resolve) => child.once("exit", () => resolve()));
      const deadline = Date.now() + START_TIMEOUT_MS;
      while (!(await answers(port))) {
        if (child.exitCode !== null) throw new Error(`radosgw ${name} exited with ${child.exitCode} before it answered`);
        if (Date.now() > deadline) throw new Error(`radosgw ${name} did not answer within ${START_TIMEOUT_MS / 1000} s`);
        await sleep(250);
      }
    },
    async stop() {
      const child = daemon;
      daemon = undefined;
      if (child === undefined) return;
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      await exited;
    },
  };
  await own.start();
  return own;
}

/** Whether the frontend answers (once the script made the user: its ready file). */
async function answers(port: number): Promise<boolean> {
  try {
    const r = await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(2000) });
    await r.arrayBuffer();
    return r.status === 200 || r.status === 403;
  } catch {
    return false;
  }
}

async function exists(p: string): Promise<boolean> {
  return fsp.access(p).then(
    () => true,
    () => false,
  );
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === "object" && addr !== null ? resolve(addr.port) : reject(new Error("no port"))));
    });
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
