// The remote stores' servers, started once per run on 127.0.0.1 by the
// tests' own starters (test/helpers/radosgw.ts and sshd.ts, imported as they
// are: they need nothing of vitest): Ceph's radosgw for S3, OpenSSH's sshd
// for SFTP. stop() ends each by its PID; should the bench die first,
// radosgw's script sees the bench's PID gone (outside a test run it
// watches its caller) and sshd gets its parent-death signal.

import * as fs from "node:fs";
import * as path from "node:path";
import { hasCeph, radosgw } from "../test/helpers/radosgw.ts";
import type { Radosgw } from "../test/helpers/radosgw.ts";
import { hasSshd, startSshd } from "../test/helpers/sshd.ts";
import { exec, execSync, hasCommand, rmrf } from "./process.ts";
import type { RemoteStore, Repo } from "./tools.ts";

export interface RemoteServer {
  store: RemoteStore;
  /** The server and how each tool reaches it, for the report. */
  description: string;
  /** The repository called `name` on this server (a bucket, a directory); each tool creates it with its init. */
  repo(name: string): Repo;
  /** Removes the repository called `name` with everything in it. */
  purge(name: string): Promise<void>;
  stop(): Promise<void>;
}

/** What the store's server needs that is not installed, as Debian's packages; empty when nothing is missing. */
export function missingPackages(store: RemoteStore): string[] {
  if (store === "s3") return hasCeph() ? [] : ["ceph-mon", "ceph-osd", "radosgw", "ceph-common"];
  return hasSshd() && hasCommand("ssh") ? [] : ["openssh-server", "openssh-client", "util-linux"];
}

export function startServer(store: RemoteStore, work: string): Promise<RemoteServer> {
  return store === "s3" ? startS3(path.join(work, "radosgw")) : startSftp(path.join(work, "sftp"));
}

/** The cluster's script: its PID and the cluster's ceph.conf. */
interface ClusterScript {
  pid: number;
  conf: string;
}

/**
 * Starts the tests' cluster, its directory under `tmp` (the tests' starter
 * makes it in the temporary directory), and finds its script in /proc by
 * its arguments (radosgw.sh DIR MON_PORT RGW_PORT WATCH_PID ...).
 */
async function startCluster(tmp: string): Promise<{ gw: Radosgw; script: ClusterScript }> {
  fs.mkdirSync(tmp, { recursive: true });
  const saved = process.env["TMPDIR"];
  process.env["TMPDIR"] = tmp;
  let gw: Radosgw;
  try {
    gw = await radosgw();
  } finally {
    if (saved === undefined) delete process.env["TMPDIR"];
    else process.env["TMPDIR"] = saved;
  }
  const port = gw.hostPort.split(":")[1];
  for (const pid of fs.readdirSync("/proc").filter((n) => /^\d+$/.test(n))) {
    let args: string[];
    try {
      args = fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
    } catch {
      continue; // gone meanwhile
    }
    if (args[1]?.endsWith("radosgw.sh") && args[4] === port && args[5] === String(process.pid)) {
      return { gw, script: { pid: Number(pid), conf: path.join(args[2]!, "ceph.conf") } };
    }
  }
  throw new Error(`radosgw answers at ${gw.endpoint} but its script is not found in /proc`);
}

/** Ends the script by its PID: it stops the daemons by theirs and removes the cluster's directory. */
async function stopCluster(pid: number): Promise<void> {
  const alive = (): boolean => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  };
  if (alive()) process.kill(pid, "SIGTERM");
  for (let i = 0; i < 200 && alive(); i++) await new Promise((r) => setTimeout(r, 100));
}

/**
 * Removes a bucket with its objects at once: radosgw's own deletes leave the
 * data to its garbage collection for hours, and the memstore OSD holds it in
 * memory until then.
 */
async function purgeBucket(conf: string, bucket: string): Promise<void> {
  const r = await exec("radosgw-admin", ["-c", conf, "-n", "client.admin", "bucket", "rm", `--bucket=${bucket}`, "--purge-objects", "--bypass-gc"]);
  if (r.code !== 0) throw new Error(`radosgw-admin bucket rm --bucket=${bucket} exited ${r.code}: ${r.stderr.trim()}`);
}

/** A bucket per repository, on a single-node Ceph cluster (one monitor, one memstore OSD). */
async function startS3(tmp: string): Promise<RemoteServer> {
  const { gw, script } = await startCluster(tmp);
  const bucket = (name: string): string => `bench-${name}`;
  const version = execSync("ceph", ["--version"]).stdout.split(" ").slice(0, 3).join(" ");
  return {
    store: "s3",
    description: `Ceph radosgw (${version}; beast frontend, one monitor, one memstore OSD) at ${gw.endpoint}; coffer at \`s3+http://${gw.hostPort}/BUCKET\`, restic at \`s3:${gw.endpoint}/BUCKET\`, a fresh bucket per repository`,
    repo: (name) => ({
      coffer: ["at", `s3+http://${gw.hostPort}/${bucket(name)}`],
      restic: ["-r", `s3:${gw.endpoint}/${bucket(name)}`],
      borg: null,
      cwd: "/",
      env: gw.env,
    }),
    purge: (name) => purgeBucket(script.conf, bucket(name)),
    stop: () => stopCluster(script.pid),
  };
}

/** A directory per repository under `root`, on the bench's disk, through sshd's internal-sftp as the current user. */
async function startSftp(root: string): Promise<RemoteServer> {
  const sshd = await startSshd();
  fs.mkdirSync(root, { recursive: true });
  const dir = (name: string): string => path.join(root, name);
  // restic runs ssh itself: no user config, only the run's key and host key
  const sshCmd = (key: string, knownHosts: string): string =>
    ["ssh", "-F", "/dev/null", "-p", String(sshd.port), "-i", key, "-o", "IdentitiesOnly=yes", "-o", `UserKnownHostsFile=${knownHosts}`, "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", `${sshd.user}@${sshd.host}`, "-s", "sftp"].join(" ");
  const ssh = sshCmd(sshd.identityFile, sshd.knownHosts);
  const version = execSync("sh", ["-c", "ssh -V 2>&1"]).stdout.split(",")[0] ?? "OpenSSH";
  return {
    store: "sftp",
    description: `OpenSSH sshd (${version}, \`internal-sftp\`) at ${sshd.host}:${sshd.port}, repositories on the work directory's disk; coffer at \`sftp://${sshd.user}@${sshd.host}:${sshd.port}//DIR\` with \`identity_file\` and \`known_hosts\`, restic at \`sftp:${sshd.user}@${sshd.host}:DIR\` with \`-o sftp.command='${sshCmd("KEY", "KNOWN_HOSTS")}'\` (the run's key and known_hosts)`,
    repo: (name) => ({
      coffer: ["--store-opt", `identity_file=${sshd.identityFile}`, "--store-opt", `known_hosts=${sshd.knownHosts}`, "at", `sftp://${sshd.user}@${sshd.host}:${sshd.port}/${dir(name)}`],
      restic: ["-r", `sftp:${sshd.user}@${sshd.host}:${dir(name)}`, "-o", `sftp.command=${ssh}`],
      borg: null,
      cwd: root,
      env: {},
    }),
    purge: async (name) => rmrf(dir(name)),
    stop: () => sshd.stop(),
  };
}
