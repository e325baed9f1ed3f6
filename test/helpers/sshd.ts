/**
 * A real OpenSSH server for the SFTP tests: Debian's `sshd -D -e -f CONFIG`
 * on 127.0.0.1 and a free port, with a host key and a user key made fresh
 * for the run (ssh-keygen), `internal-sftp`, no PAM, the current user
 * allowed by key only. With `passwordUser`, sshd runs in a mount namespace
 * of its own where copies of /etc/passwd and /etc/shadow, bind-mounted over
 * the real ones, add a test user with a password: the machine's accounts
 * are untouched. It runs under `setpriv --pdeathsig KILL`, so it dies with
 * the test process; stop() kills it by its PID. startSshAgent() runs a real
 * ssh-agent the same way.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
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
  /** With `passwordUser`: a user who logs in by password only, a file holding the password, and a directory the user may write. */
  password?: { user: string; file: string; writable: string };
  /** Kills every session process, each connection's monitor and its children (the connections drop), leaving the listener. */
  killSessions(): number;
  /** Stops (SIGSTOP) every session process, leaving the listener: the connections stay open but nothing answers. killSessions() ends them. */
  stopSessions(): number;
  stop(): Promise<void>;
}

/** Whether sshd, ssh-keygen and setpriv are there (Debian's openssh-server, openssh-client, util-linux). */
export function hasSshd(): boolean {
  return existsSync(SSHD) && onPath("ssh-keygen") && onPath("setpriv");
}

/** Whether a password user can be made: root (for the mount namespace), unshare and mount (util-linux), openssl (the password hash). */
export function canAddPasswordUser(): boolean {
  return process.getuid?.() === 0 && onPath("unshare") && onPath("mount") && onPath("openssl");
}

/** Whether ssh-agent and ssh-add are there (openssh-client). */
export function hasSshAgent(): boolean {
  return onPath("ssh-agent") && onPath("ssh-add");
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

const PASSWORD_USER = "coffer-pw";
const PASSWORD_UID = 4242;

/** The password user's lines: /etc/passwd and /etc/shadow with it added, for sshd's namespace. */
async function passwordUserFiles(dir: string): Promise<{ passwd: string; shadow: string; file: string; writable: string }> {
  const password = randomBytes(12).toString("hex");
  const file = path.join(dir, "password");
  await fsp.writeFile(file, `${password}\n`, { mode: 0o600 });
  const hash = execFileSync("openssl", ["passwd", "-6", "-stdin"], { input: password, encoding: "utf8" }).trim();
  // The user must get through the run's directory (mkdtemp makes it 0700) to its own; the keys in it stay 0600.
  await fsp.chmod(dir, 0o711);
  const writable = path.join(dir, "pw-home");
  await fsp.mkdir(writable);
  await fsp.chown(writable, PASSWORD_UID, PASSWORD_UID);
  const passwd = path.join(dir, "passwd");
  const shadow = path.join(dir, "shadow");
  await fsp.writeFile(passwd, `${readFileSync("/etc/passwd", "utf8").trimEnd()}\n${PASSWORD_USER}:x:${PASSWORD_UID}:${PASSWORD_UID}:coffer test:${writable}:/bin/sh\n`);
  await fsp.writeFile(shadow, `${readFileSync("/etc/shadow", "utf8").trimEnd()}\n${PASSWORD_USER}:${hash}:19000:0:99999:7:::\n`, { mode: 0o600 });
  return { passwd, shadow, file, writable };
}

export interface SshdOptions {
  /** A user that logs in by password only, in sshd's own view of the accounts (see passwordUserFiles). */
  passwordUser?: boolean | undefined;
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
  const pw = opts.passwordUser ? await passwordUserFiles(dir) : undefined;
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
        `AllowUsers ${user}${pw ? ` ${PASSWORD_USER}` : ""}`,
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
        ...(pw ? [`Match User ${PASSWORD_USER}`, "  PasswordAuthentication yes", "  PubkeyAuthentication no"] : []),
        "",
      ].join("\n"),
    );
    const sshd = [SSHD, "-D", "-e", "-f", config];
    // unshare execs (no fork), so the PID is sshd's either way.
    const argv = pw
      ? ["unshare", "--mount", "--propagation", "private", "sh", "-c", 'mount --bind "$1" /etc/passwd && mount --bind "$2" /etc/shadow && shift 2 && exec "$@"', "sh", pw.passwd, pw.shadow, ...sshd]
      : sshd;
    const child = spawn("setpriv", ["--pdeathsig", "KILL", "--", ...argv], { stdio: ["ignore", "ignore", "pipe"] });
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
      ...(pw ? { password: { user: PASSWORD_USER, file: pw.file, writable: pw.writable } } : {}),
      killSessions: () => signalSessions(pid, "SIGKILL"),
      stopSessions: () => signalSessions(pid, "SIGSTOP"),
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

export interface SshAgent {
  /** The agent's socket, for SSH_AUTH_SOCK. */
  socket: string;
  /** Adds a private key to the agent (ssh-add). */
  add(keyFile: string): void;
  stop(): Promise<void>;
}

/** Starts `ssh-agent -D -a SOCKET` in `dir`, under `setpriv --pdeathsig KILL`; stop() kills it by its PID. */
export async function startSshAgent(dir: string): Promise<SshAgent> {
  const socket = path.join(dir, `agent-${randomBytes(4).toString("hex")}.sock`);
  const child = spawn("setpriv", ["--pdeathsig", "KILL", "--", "ssh-agent", "-D", "-a", socket], { stdio: ["ignore", "pipe", "pipe"] });
  const ready = await new Promise<true | string>((resolve) => {
    let log = "";
    const onData = (d: Buffer) => {
      log += d.toString();
      if (log.includes("SSH_AUTH_SOCK=")) {
        child.stdout!.off("data", onData);
        child.stdout!.resume();
        child.off("exit", onExit);
        resolve(true);
      }
    };
    const onExit = () => resolve(log || "exited");
    child.stdout!.on("data", onData);
    child.stderr!.resume();
    child.once("exit", onExit);
  });
  if (ready !== true) throw new Error(`ssh-agent did not start: ${ready}`);
  const pid = child.pid!;
  return {
    socket,
    add: (keyFile) => execFileSync("ssh-add", ["-q", keyFile], { env: { ...process.env, SSH_AUTH_SOCK: socket }, stdio: "ignore" }),
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((r) => child.once("exit", r));
        process.kill(pid, "SIGKILL");
        await exited;
      }
      await fsp.rm(socket, { force: true });
    },
  };
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

/** Sends `signal` to every process below the listener `pid`; returns how many got it. */
function signalSessions(pid: number, signal: NodeJS.Signals): number {
  let n = 0;
  for (const p of descendantsOf(pid)) {
    try {
      process.kill(p, signal);
      n++;
    } catch {
      // gone already
    }
  }
  return n;
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
