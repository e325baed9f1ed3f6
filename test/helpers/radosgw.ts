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
const ACCESS_KEY = "COFFERTESTACCESSKEY0";
const SECRET_KEY = "coffer-test-secret-key-0123456789abcdef";
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

function server(port: number): Radosgw {
  const hostPort = `127.0.0.1:${port}`;
  return {
    endpoint: `http://${hostPort}`,
    hostPort,
    accessKeyId: ACCESS_KEY,
    secretAccessKey: SECRET_KEY,
    env: { AWS_ACCESS_KEY_ID: ACCESS_KEY, AWS_SECRET_ACCESS_KEY: SECRET_KEY, AWS_REGION: "us-east-1" },
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
    const port = await start(watchPid);
    await fsp.writeFile(`${info}.tmp`, JSON.stringify({ port }));
    await fsp.rename(`${info}.tmp`, info);
    return server(port);
  }
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    const text = await fsp.readFile(info, "utf8").catch(() => undefined);
    if (text !== undefined) return server((JSON.parse(text) as { port: number }).port);
    if (Date.now() > deadline) throw new Error(`radosgw: another test file started it but it was not ready within ${START_TIMEOUT_MS / 1000} s (${info})`);
    await sleep(200);
  }
}

/** Starts the cluster; resolves with radosgw's port once S3 answers. */
async function start(watchPid: number): Promise<number> {
  const [monPort, rgwPort] = [await freePort(), await freePort()];
  const dir = await fsp.mkdtemp(path.join(tmpdir(), "coffer-radosgw-"));
  // Detached: it must outlive this test file, and it ends itself (see above).
  const child = spawn("bash", [SCRIPT, dir, String(monPort), String(rgwPort), String(watchPid), ACCESS_KEY, SECRET_KEY], { detached: true, stdio: "ignore" });
  child.unref();
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    const failed = await fsp.readFile(`${dir}.failed`, "utf8").catch(() => undefined);
    if (failed !== undefined) {
      await fsp.rm(`${dir}.failed`, { force: true });
      throw new Error(`radosgw did not start: ${failed}`);
    }
    if ((await exists(path.join(dir, "ready"))) && (await answers(rgwPort))) return rgwPort;
    if (Date.now() > deadline) {
      if (child.pid !== undefined) process.kill(child.pid, "SIGTERM");
      throw new Error(`radosgw did not answer within ${START_TIMEOUT_MS / 1000} s (logs in ${dir}/log)`);
    }
    await sleep(250);
  }
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
