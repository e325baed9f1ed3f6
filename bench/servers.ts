// The remote stores' servers, started once per run on 127.0.0.1 by the
// tests' own starters (test/helpers/radosgw.ts and sshd.ts, imported as they
// are: they need nothing of vitest): Ceph's radosgw for S3, OpenSSH's sshd
// for SFTP. stop() ends each by its PID; should the bench die first,
// radosgw's script sees its PID gone and sshd gets its parent-death signal.

import * as fs from "node:fs";
import * as path from "node:path";
import { hasCeph, startOwnRadosgw } from "../test/helpers/radosgw.ts";
import { hasSshd, startSshd } from "../test/helpers/sshd.ts";
import { execSync, hasCommand, rmrf } from "./process.ts";
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
  return store === "s3" ? startS3() : startSftp(path.join(work, "sftp"));
}

/** A bucket per repository, on a single-node Ceph cluster (one monitor, one memstore OSD). */
async function startS3(): Promise<RemoteServer> {
  const gw = await startOwnRadosgw();
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
    purge: (name) => gw.purgeBucket(bucket(name)),
    stop: () => gw.stop(),
  };
}

/** A directory per repository under `root`, on the bench's disk, through sshd's internal-sftp as the current user. */
async function startSftp(root: string): Promise<RemoteServer> {
  const sshd = await startSshd();
  fs.mkdirSync(root, { recursive: true });
  const dir = (name: string): string => path.join(root, name);
  // restic runs ssh itself: no user config, only the run's key and host key
  const ssh = ["ssh", "-F", "/dev/null", "-p", String(sshd.port), "-i", sshd.identityFile, "-o", "IdentitiesOnly=yes", "-o", `UserKnownHostsFile=${sshd.knownHosts}`, "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", `${sshd.user}@${sshd.host}`, "-s", "sftp"];
  const version = execSync("sh", ["-c", "ssh -V 2>&1"]).stdout.split(",")[0] ?? "OpenSSH";
  return {
    store: "sftp",
    description: `OpenSSH sshd (${version}, \`internal-sftp\`) at ${sshd.host}:${sshd.port}, repositories on the work directory's disk; coffer at \`sftp://${sshd.user}@${sshd.host}:${sshd.port}//DIR\` with \`identity_file\` and \`known_hosts\`, restic at \`sftp:${sshd.user}@${sshd.host}:DIR\` with \`-o sftp.command='${ssh.join(" ")}'\``,
    repo: (name) => ({
      coffer: ["--store-opt", `identity_file=${sshd.identityFile}`, "--store-opt", `known_hosts=${sshd.knownHosts}`, "at", `sftp://${sshd.user}@${sshd.host}:${sshd.port}/${dir(name)}`],
      restic: ["-r", `sftp:${sshd.user}@${sshd.host}:${dir(name)}`, "-o", `sftp.command=${ssh.join(" ")}`],
      borg: null,
      cwd: root,
      env: {},
    }),
    purge: async (name) => rmrf(dir(name)),
    stop: () => sshd.stop(),
  };
}
