/**
 * SSH connections for the sftp connectors: a pool of `connections` ssh2
 * clients, each with one SFTP session, made on first use, with TCP_NODELAY
 * (ssh2 otherwise waits on Nagle at each small write) and keepalives. An
 * operation that fails because its connection dropped is run again on a
 * fresh one, a few times; an SFTP status (no such file, permission denied)
 * is the answer and passes through. Reads and writes of a file are
 * pipelined here: ssh2 keeps one request in flight per call, so a long
 * read or write is cut into requests of the server's maximum length
 * (`limits@openssh.com`, which ssh2 asks for) with several in flight.
 */
import { promises as fsp } from "node:fs";
import ssh2 from "ssh2";
import type { ConnectConfig, FileEntryWithStats, InputAttributes, OpenMode, ServerHostKeyAlgorithm, SFTPWrapper, Stats } from "ssh2";
import { abortError, CofferError, isCofferError, throwIfAborted } from "../../util/errors.js";
import { hostKeyCheck } from "./host-keys.js";
import type { SftpSettings } from "./params.js";

/** SFTP status codes (draft-ietf-secsh-filexfer-02). */
export const SftpStatus = { EOF: 1, NO_SUCH_FILE: 2, PERMISSION_DENIED: 3, FAILURE: 4, NO_CONNECTION: 6, CONNECTION_LOST: 7, OP_UNSUPPORTED: 8 } as const;

/** Requests in flight per read or write of one file. */
const PIPELINE_DEPTH = 16;
/** Runs of an operation whose connection dropped, the first included. */
const ATTEMPTS = 3;
const KEEPALIVE_MS = 15_000;
const KEEPALIVE_COUNT = 3;
const READY_TIMEOUT_MS = 20_000;

/** The SFTP status of a failed request, or undefined when the failure was not the server's answer. */
export function sftpStatus(e: unknown): number | undefined {
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === "number" ? code : undefined;
}

/** Whether `e` says the connection, not the request, failed. */
function connectionLost(e: unknown): boolean {
  if (isCofferError(e)) return e.data.connectionLost === true;
  const status = sftpStatus(e);
  return status === undefined || status === SftpStatus.NO_CONNECTION || status === SftpStatus.CONNECTION_LOST;
}

/** One SSH connection and its SFTP session. */
class Connection {
  broken = false;
  busy = 0;
  constructor(
    readonly client: ssh2.Client,
    readonly sftp: SFTPWrapper,
  ) {
    const drop = () => (this.broken = true);
    client.on("close", drop);
    client.on("error", drop);
    sftp.on("close", drop);
  }

  end(): void {
    this.broken = true;
    this.client.end();
  }
}

export class SftpPool {
  readonly #s: SftpSettings;
  readonly #conns: (Connection | Promise<Connection> | undefined)[];
  #closed = false;

  constructor(settings: SftpSettings) {
    this.#s = settings;
    this.#conns = new Array<undefined>(settings.connections).fill(undefined);
  }

  /** Runs `fn` on a connection (the least busy), again on a fresh one if the connection drops under it. */
  async run<T>(fn: (sftp: SFTPWrapper) => Promise<T>, signal?: AbortSignal): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      throwIfAborted(signal);
      let conn: Connection | undefined;
      try {
        const got = await this.#acquire(signal);
        conn = got.conn;
        conn.busy++;
        try {
          return await fn(conn.sftp);
        } finally {
          conn.busy--;
        }
      } catch (e) {
        throwIfAborted(signal);
        if (!connectionLost(e) && !conn?.broken) throw e;
        conn?.end();
        if (attempt >= ATTEMPTS) {
          throw new CofferError("IO", `${this.#s.where}: the connection failed ${ATTEMPTS} times: ${(e as Error).message}`, { connectionLost: true }, { cause: e });
        }
        await new Promise((r) => setTimeout(r, 250 * attempt));
      }
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    const conns = await Promise.allSettled(this.#conns.splice(0));
    for (const c of conns) if (c.status === "fulfilled" && c.value) c.value.end();
  }

  async #acquire(signal?: AbortSignal): Promise<{ conn: Connection; slot: number }> {
    if (this.#closed) throw new CofferError("IO", `${this.#s.where}: the store is closed`);
    // A free connection, else an empty slot, else the least busy.
    let slot = -1;
    let best = Infinity;
    for (let i = 0; i < this.#conns.length; i++) {
      const c = this.#conns[i];
      if (c instanceof Connection && c.broken) this.#conns[i] = undefined;
      const cur = this.#conns[i];
      const load = cur === undefined ? 0.5 : cur instanceof Connection ? cur.busy : 1;
      if (load < best) [best, slot] = [load, i];
    }
    let c = this.#conns[slot];
    if (c === undefined) {
      const made = connect(this.#s, signal);
      this.#conns[slot] = made;
      made.then(
        (conn) => {
          if (this.#conns[slot] === made) this.#conns[slot] = conn;
          if (this.#closed) conn.end();
        },
        () => {
          if (this.#conns[slot] === made) this.#conns[slot] = undefined;
        },
      );
      c = made;
    }
    return { conn: await c, slot };
  }
}

/** Opens a connection and its SFTP session; every failure is an IO error naming the server. */
async function connect(s: SftpSettings, signal?: AbortSignal): Promise<Connection> {
  const check = await hostKeyCheck(s);
  const cfg: ConnectConfig = {
    host: s.host,
    port: s.port,
    username: s.user,
    keepaliveInterval: KEEPALIVE_MS,
    keepaliveCountMax: KEEPALIVE_COUNT,
    readyTimeout: READY_TIMEOUT_MS,
  };
  if (check.algorithms) cfg.algorithms = { serverHostKey: check.algorithms as ServerHostKeyAlgorithm[] };
  const tried: string[] = [];
  if (s.identityFile !== undefined) {
    cfg.privateKey = await readCredential(s, s.identityFile, "identity_file");
    tried.push(`the key ${s.identityFile}`);
  }
  if (s.passwordFile !== undefined) {
    cfg.password = (await readCredential(s, s.passwordFile, "password_file")).toString("utf8").split("\n")[0]!;
    tried.push(`the password of ${s.passwordFile}`);
  }
  if (s.agent !== undefined) {
    cfg.agent = s.agent;
    tried.push(`the agent at ${s.agent}`);
  }
  if (tried.length === 0) throw new CofferError("USAGE", `${s.where}: no credentials: give -o identity_file=FILE or -o password_file=FILE, or run an ssh agent (SSH_AUTH_SOCK)`);
  let rejected: CofferError | undefined;
  cfg.hostVerifier = (key: Buffer) => {
    rejected = check.verdict(key);
    return rejected === undefined;
  };
  const client = new ssh2.Client();
  return new Promise<Connection>((resolve, reject) => {
    const fail = (e: unknown) => {
      signal?.removeEventListener("abort", onAbort);
      client.end();
      reject(e);
    };
    const onAbort = () => fail(abortError(signal));
    signal?.addEventListener("abort", onAbort, { once: true });
    client.once("error", (e: Error & { level?: string }) => {
      if (rejected) return fail(rejected);
      if (e.level === "client-authentication") return fail(new CofferError("IO", `${s.where}: authentication failed (tried ${tried.join(", ")})`));
      fail(new CofferError("IO", `${s.where}: cannot connect: ${e.message}`, { connectionLost: true }, { cause: e }));
    });
    client.once("ready", () => {
      client.setNoDelay(true);
      client.sftp((e, sftp) => {
        if (e) return fail(new CofferError("IO", `${s.where}: no SFTP service: ${e.message}`, {}, { cause: e }));
        signal?.removeEventListener("abort", onAbort);
        client.on("error", () => undefined); // a later drop is seen by the operation running on it
        resolve(new Connection(client, sftp));
      });
    });
    client.connect(cfg);
  });
}

async function readCredential(s: SftpSettings, file: string, param: string): Promise<Buffer> {
  try {
    return await fsp.readFile(file);
  } catch (e) {
    throw new CofferError("USAGE", `${s.where}: cannot read ${param} ${file}: ${(e as Error).message}`, { path: file });
  }
}

/** ssh2's callback calls as promises. */
function call<T = void>(f: (cb: (err: Error | undefined | null, v: T) => void) => void): Promise<T> {
  return new Promise((resolve, reject) => f((err, v) => (err ? reject(err) : resolve(v))));
}

export const sftpOps = {
  open: (sftp: SFTPWrapper, p: string, flags: OpenMode) => call<Buffer>((cb) => sftp.open(p, flags, cb)),
  close: (sftp: SFTPWrapper, h: Buffer) => call((cb) => sftp.close(h, cb)),
  fstat: (sftp: SFTPWrapper, h: Buffer) => call<Stats>((cb) => sftp.fstat(h, cb)),
  stat: (sftp: SFTPWrapper, p: string) => call<Stats>((cb) => sftp.stat(p, cb)),
  readdir: (sftp: SFTPWrapper, p: string) => call<FileEntryWithStats[]>((cb) => sftp.readdir(p, cb)),
  mkdir: (sftp: SFTPWrapper, p: string) => call((cb) => sftp.mkdir(p, cb)),
  unlink: (sftp: SFTPWrapper, p: string) => call((cb) => sftp.unlink(p, cb)),
  /** Plain SFTP rename, which refuses an existing target. */
  renameNoReplace: (sftp: SFTPWrapper, from: string, to: string) => call((cb) => sftp.rename(from, to, cb)),
  /** posix-rename@openssh.com: replaces the target atomically (as rename(2)). */
  renameReplace: (sftp: SFTPWrapper, from: string, to: string) => call((cb) => sftp.ext_openssh_rename(from, to, cb)),
  fsync: (sftp: SFTPWrapper, h: Buffer) => call((cb) => sftp.ext_openssh_fsync(h, cb)),
  // For the importer and exporter: trees, links and attributes.
  lstat: (sftp: SFTPWrapper, p: string) => call<Stats>((cb) => sftp.lstat(p, cb)),
  readlink: (sftp: SFTPWrapper, p: string) => call<string>((cb) => sftp.readlink(p, cb)),
  symlink: (sftp: SFTPWrapper, target: string, p: string) => call((cb) => sftp.symlink(target, p, cb)),
  hardlink: (sftp: SFTPWrapper, existing: string, p: string) => call((cb) => sftp.ext_openssh_hardlink(existing, p, cb)),
  setstat: (sftp: SFTPWrapper, p: string, attrs: InputAttributes) => call((cb) => sftp.setstat(p, attrs, cb)),
  /** lsetstat@openssh.com: setstat that does not follow a symlink. */
  lsetstat: (sftp: SFTPWrapper, p: string, attrs: InputAttributes) => call((cb) => sftp.ext_openssh_lsetstat(p, attrs, cb)),
  fsetstat: (sftp: SFTPWrapper, h: Buffer, attrs: InputAttributes) => call((cb) => sftp.fsetstat(h, attrs, cb)),
};

/** Whether the server has the OpenSSH extension `name` (`posix-rename@openssh.com`, `fsync@openssh.com`). */
export function hasExtension(sftp: SFTPWrapper, name: string): boolean {
  return (sftp as unknown as { _extensions: Record<string, string> })._extensions[name] === "1";
}

function limits(sftp: SFTPWrapper): { read: number; write: number } {
  const x = sftp as unknown as { _maxReadLen: number; _maxWriteLen: number };
  return { read: x._maxReadLen, write: x._maxWriteLen };
}

/** Runs `step(i)` for i in [0, n) with at most PIPELINE_DEPTH running; stops issuing at the first failure or an abort. */
async function pipelined(n: number, step: (i: number) => Promise<void>, signal?: AbortSignal): Promise<void> {
  let next = 0;
  let failed: unknown;
  const lane = async () => {
    while (next < n && failed === undefined) {
      if (signal?.aborted) {
        failed = abortError(signal);
        return;
      }
      const i = next++;
      await step(i).catch((e: unknown) => {
        failed ??= e;
      });
    }
  };
  await Promise.all(Array.from({ length: Math.min(n, PIPELINE_DEPTH) }, lane));
  if (failed !== undefined) throw failed;
}

/**
 * Reads `out.byteLength` bytes at `offset` of an open file into `out`;
 * `short(at)` makes the error when the file ends first.
 */
export async function readAt(sftp: SFTPWrapper, h: Buffer, out: Uint8Array, offset: number, short: (at: number) => Error, signal?: AbortSignal): Promise<void> {
  const size = limits(sftp).read;
  const buf = Buffer.from(out.buffer, out.byteOffset, out.byteLength);
  await pipelined(
    Math.ceil(out.byteLength / size),
    async (i) => {
      let at = i * size;
      const end = Math.min(at + size, out.byteLength);
      while (at < end) {
        const got = await call<number>((cb) => sftp.read(h, buf, at, end - at, offset + at, cb));
        if (got <= 0) throw short(offset + at);
        at += got;
      }
    },
    signal,
  );
}

/** Writes `parts`, in order, at `offset` of an open file. */
export async function writeAt(sftp: SFTPWrapper, h: Buffer, parts: readonly Uint8Array[], offset: number, signal?: AbortSignal): Promise<void> {
  const size = limits(sftp).write;
  const pieces: { buf: Buffer; at: number }[] = [];
  let at = offset;
  for (const p of parts) {
    const b = Buffer.from(p.buffer, p.byteOffset, p.byteLength);
    for (let o = 0; o < b.byteLength; o += size) pieces.push({ buf: b.subarray(o, o + size), at: at + o });
    at += b.byteLength;
  }
  await pipelined(pieces.length, (i) => call((cb) => sftp.write(h, pieces[i]!.buf, 0, pieces[i]!.buf.byteLength, pieces[i]!.at, cb)), signal);
}
