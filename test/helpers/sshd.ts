/**
 * A real OpenSSH server for the SFTP tests: Debian's `sshd -D -e -f CONFIG`
 * on 127.0.0.1 and a free port, with a host key and a user key made fresh
 * for the run (ssh-keygen), `internal-sftp`, no PAM, the current user
 * allowed by key only (no password login: without PAM sshd would check
 * the system's password database, which a test must not touch). It runs
 * under `setpriv --pdeathsig KILL`, so it dies with the test process; stop()
 * kills it by its PID.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { existsSync, promises as fsp, readdirSync, readFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir, userInfo } from "node:os";
import * as path from "node:path";

const SSHD = "/usr/sbin/sshd";

export interface Sshd {
  host: string;
  port: number;
  user: string;
  /** The run's directory: keys, config, known_hosts, and room for repositories. */
  dir: string;
  /** The user's private key (no passphrase) and a known_hosts file naming the server. */
  identityFile: string;
  knownHosts: string;
  /** The host key's fingerprint as ssh-keygen prints it (SHA256:...). */
  hostKeyFingerprint: string;
  /** A second key pair's private key, not authorized. */
  otherIdentityFile: string;
  /** The fingerprint of a host key the server does not have. */
  otherHostKeyFingerprint: string;
  /** A known_hosts file naming another key for the server. */
  wrongKnownHosts: string;
  /** Kills every session process, each connection's monitor and its children (the connections drop), leaving the listener. */
  killSessions(): number;
  stop(): Promise<void>;
}

/** Whether sshd, ssh-keygen and setpriv are there (Debian's openssh-server, openssh-client, util-linux). */
export function hasSshd(): boolean {
  return existsSync(SSHD) && onPath("ssh-keygen") && onPath("setpriv");
}

function onPath(cmd: string): boolean {
  return (process.env.PATH ?? "").split(":").some((d) => d !== "" && existsSync(path.join(d, cmd)));
}

function keygen(file: string): void {
  execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "coffer-test", "-f", file], { stdio: "ignore" });
}

function fingerprint(pubFile: string): string {
  return execFileSync("ssh-keygen", ["-l", "-E", "sha256", "-f", pubFile], { encoding: "utf8" }).split(" ")[1]!;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

export interface SshdOptions {
  /** Flags of internal-sftp, e.g. `-P open` to deny every open (the client then gets "permission denied"). */
  sftpFlags?: string[] | undefined;
}

/** Starts the server (a few tries, should another process take the port first). */
export async function startSshd(opts: SshdOptions = {}): Promise<Sshd> {
  const dir = await fsp.mkdtemp(path.join(tmpdir(), "coffer-sshd-"));
  const user = userInfo().username;
  const hostKey = path.join(dir, "host_ed25519");
  const otherHostKey = path.join(dir, "other_host_ed25519");
  const identityFile = path.join(dir, "id_ed25519");
  const otherIdentityFile = path.join(dir, "other_id_ed25519");
  for (const f of [hostKey, otherHostKey, identityFile, otherIdentityFile]) keygen(f);
  await fsp.copyFile(`${identityFile}.pub`, path.join(dir, "authorized_keys"));
  // Running as root, sshd wants its privilege separation directory.
  if (process.getuid?.() === 0) await fsp.mkdir("/run/sshd", { recursive: true, mode: 0o755 });
  let lastError = "";
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort();
    const config = path.join(dir, "sshd_config");
    await fsp.writeFile(
      config,
      [
        `ListenAddress 127.0.0.1:${port}`,
        `HostKey ${hostKey}`,
        `AuthorizedKeysFile ${path.join(dir, "authorized_keys")}`,
        `PidFile none`,
        `AllowUsers ${user}`,
        "UsePAM no",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "PubkeyAuthentication yes",
        "PermitRootLogin prohibit-password",
        "StrictModes no",
        "MaxStartups 64",
        "MaxSessions 64",
        "LogLevel VERBOSE",
        ["Subsystem sftp internal-sftp", ...(opts.sftpFlags ?? [])].join(" "),
        "",
      ].join("\n"),
    );
    const child = spawn("setpriv", ["--pdeathsig", "KILL", "--", SSHD, "-D", "-e", "-f", config], { stdio: ["ignore", "ignore", "pipe"] });
    const ready = await listening(child, port);
    if (ready !== true) {
      lastError = ready;
      continue;
    }
    const hostLine = readFileSync(`${hostKey}.pub`, "utf8").split(" ").slice(0, 2).join(" ");
    const otherLine = readFileSync(`${otherHostKey}.pub`, "utf8").split(" ").slice(0, 2).join(" ");
    const knownHosts = path.join(dir, "known_hosts");
    const wrongKnownHosts = path.join(dir, "wrong_known_hosts");
    await fsp.writeFile(knownHosts, `[127.0.0.1]:${port} ${hostLine}\n`);
    await fsp.writeFile(wrongKnownHosts, `[127.0.0.1]:${port} ${otherLine}\n`);
    const pid = child.pid!;
    return {
      host: "127.0.0.1",
      port,
      user,
      dir,
      identityFile,
      knownHosts,
      hostKeyFingerprint: fingerprint(`${hostKey}.pub`),
      otherIdentityFile,
      otherHostKeyFingerprint: fingerprint(`${otherHostKey}.pub`),
      wrongKnownHosts,
      killSessions: () => {
        let n = 0;
        for (const p of descendantsOf(pid)) {
          try {
            process.kill(p, "SIGKILL");
            n++;
          } catch {
            // gone already
          }
        }
        return n;
      },
      stop: async () => {
        if (child.exitCode === null && child.signalCode === null) {
          const exited = new Promise((r) => child.once("exit", r));
          process.kill(pid, "SIGKILL");
          await exited;
        }
        await fsp.rm(dir, { recursive: true, force: true });
      },
    };
  }
  await fsp.rm(dir, { recursive: true, force: true });
  throw new Error(`sshd did not start: ${lastError}`);
}

/** Resolves true once sshd logs that it listens on `port`, or with its log when it exits first. */
function listening(child: ChildProcess, port: number): Promise<true | string> {
  return new Promise((resolve) => {
    let log = "";
    const onData = (d: Buffer) => {
      log += d.toString();
      if (log.includes(`Server listening on 127.0.0.1 port ${port}`)) {
        // Keep draining stderr so sshd never blocks on a full pipe.
        child.stderr!.off("data", onData);
        child.stderr!.resume();
        child.off("exit", onExit);
        resolve(true);
      }
    };
    const onExit = () => resolve(log || "exited");
    child.stderr!.on("data", onData);
    child.once("exit", onExit);
  });
}

/** PIDs below `pid` (children first, then theirs), from /proc. */
function descendantsOf(pid: number): number[] {
  const out: number[] = [];
  for (let level = childrenOf(pid); level.length > 0; level = level.flatMap(childrenOf)) out.push(...level);
  return out;
}

/** PIDs whose parent is `pid`, from /proc. */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid === pid) out.push(Number(name));
    } catch {
      // exited meanwhile
    }
  }
  return out;
}
