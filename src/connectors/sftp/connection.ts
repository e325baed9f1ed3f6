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
import { sleep } from "../../util/sleep.js";

/** SFTP status codes (draft-ietf-secsh-filexfer-02). */
export const SftpStatus = { EOF: 1, NO_SUCH_FILE: 2, PERMISSION_DENIED: 3, FAILURE: 4, NO_CONNECTION: 6, CONNECTION_LOST: 7, OP_UNSUPPORTED: 8 } as const;

/** Requests in flight per read or write of one file. */
const PIPELINE_DEPTH = 16;
/** Runs of an operation whose connection dropped, the first included. */
const ATTEMPTS = 4;
/** The wait before the second run of an operation; doubled before each later one. */
const RETRY_BASE_MS = 250;
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

/** The error every request of a dropped connection fails with. */
function lost(where: string, why: string, cause?: unknown): CofferError {
  return new CofferError("IO", `${where}: ${why}`, { connectionLost: true }, cause === undefined ? undefined : { cause });
}

/** The connection each SFTP session belongs to, so that every request goes through its guard. */
const owners = new WeakMap<SFTPWrapper, Connection>();

/**
 * One SSH connection and its SFTP session. Every request is tracked until
 * answered: when the connection closes or errors, or no answer comes for
 * `stallMs` while requests wait, the connection is failed and every pending
 * and later request rejects at once (ssh2 leaves a request sent on a dead
 * channel unanswered forever).
 */
class Connection {
  busy = 0;
  #failure: CofferError | undefined;
  readonly #pending = new Set<(e: unknown) => void>();
  #watchdog: NodeJS.Timeout | undefined;

  constructor(
    readonly client: ssh2.Client,
    readonly sftp: SFTPWrapper,
    readonly where: string,
    readonly stallMs: number,
  ) {
    owners.set(sftp, this);
    client.on("close", () => this.fail(lost(where, "the connection closed")));
    client.on("error", (e: Error) => this.fail(lost(where, `the connection failed: ${e.message}`, e)));
    sftp.on("close", () => this.fail(lost(where, "the SFTP session closed")));
    sftp.on("error", (e: Error) => this.fail(lost(where, `the SFTP session failed: ${e.message}`, e)));
  }

  get broken(): boolean {
    return this.#failure !== undefined;
  }

  /** Sends one request (`f` calls ssh2 with the callback) and waits for its answer, or for the connection to fail. */
  call<T>(f: (cb: (err: Error | undefined | null, v: T) => void) => void): Promise<T> {
    if (this.#failure !== undefined) return Promise.reject(this.#failure);
    return new Promise<T>((resolve, reject) => {
      this.#pending.add(reject);
      this.#watchdog ??= setTimeout(() => this.fail(lost(this.where, `no answer from the server for ${this.stallMs / 1000} s`)), this.stallMs);
      try {
        f((err, v) => {
          if (!this.#pending.delete(reject)) return;
          this.#progress();
          if (err) reject(err);
          else resolve(v);
        });
      } catch (e) {
        this.#pending.delete(reject);
        this.#progress();
        reject(e);
      }
    });
  }

  /** Fails the connection with `e`: every pending request rejects with it, and the socket is destroyed. */
  fail(e: CofferError): void {
    if (this.#failure !== undefined) return;
    this.#failure = e;
    clearTimeout(this.#watchdog);
    this.#watchdog = undefined;
    const pending = [...this.#pending];
    this.#pending.clear();
    for (const reject of pending) reject(e);
    this.client.destroy();
  }

  end(): void {
    if (this.#failure === undefined) this.#failure = lost(this.where, "the connection was closed");
    clearTimeout(this.#watchdog);
    this.client.end();
  }

  /** An answer came: the watchdog waits `stallMs` again for the next, or stops when none is pending. */
  #progress(): void {
    if (this.#pending.size > 0) this.#watchdog?.refresh();
    else {
      clearTimeout(this.#watchdog);
      this.#watchdog = undefined;
    }
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

  /**
   * Runs `fn` on a connection (the least busy), again on a fresh one if the
   * connection drops or stalls under it, up to ATTEMPTS runs in all, waiting
   * longer before each. An abort fails the connection, so that its requests
   * in flight end at once.
   */
  async run<T>(fn: (sftp: SFTPWrapper) => Promise<T>, signal?: AbortSignal): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      throwIfAborted(signal);
      let conn: Connection | undefined;
      const onAbort = () => conn?.fail(lost(this.#s.where, "the operation was cancelled"));
      try {
        conn = await this.#acquire(signal);
        conn.busy++;
        signal?.addEventListener("abort", onAbort, { once: true });
        try {
          throwIfAborted(signal);
          return await fn(conn.sftp);
        } finally {
          conn.busy--;
          signal?.removeEventListener("abort", onAbort);
        }
      } catch (e) {
        throwIfAborted(signal);
        if (!connectionLost(e) && !conn?.broken) throw e;
        conn?.fail(lost(this.#s.where, "the connection failed"));
        if (attempt >= ATTEMPTS) {
          throw new CofferError("IO", `${this.#s.where}: the connection failed ${ATTEMPTS} times: ${(e as Error).message}`, { connectionLost: true }, { cause: e });
        }
        await sleep(RETRY_BASE_MS * 2 ** (attempt - 1), signal);
      }
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    const conns = await Promise.allSettled(this.#conns.splice(0));
    for (const c of conns) if (c.status === "fulfilled" && c.value) c.value.end();
  }

  async #acquire(signal?: AbortSignal): Promise<Connection> {
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
    return c;
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
    let settled = false;
    let agentFailure = "";
    const done = () => {
      settled = true;
      signal?.removeEventListener("abort", onAbort);
      client.off("error", onError);
      client.off("close", onClose);
      client.on("error", () => undefined); // ssh2 may emit more on a destroyed client; the Connection listens once made
    };
    const fail = (e: unknown) => {
      if (settled) return;
      done();
      client.destroy();
      reject(e);
    };
    const onAbort = () => fail(abortError(signal));
    const onError = (e: Error & { level?: string }) => {
      if (rejected) return fail(rejected);
      // An agent that cannot be reached is skipped by ssh2, which goes on to the other credentials.
      if (e.level === "agent") return void (agentFailure = `; the agent at ${s.agent} failed: ${e.message}`);
      if (e.level === "client-authentication") return fail(new CofferError("IO", `${s.where}: authentication failed (tried ${tried.join(", ")})${agentFailure}`));
      fail(lost(s.where, `cannot connect: ${e.message}`, e));
    };
    const onClose = () => fail(rejected ?? lost(s.where, "the server closed the connection before the SFTP session started"));
    signal?.addEventListener("abort", onAbort, { once: true });
    client.on("error", onError);
    client.on("close", onClose);
    client.once("ready", () => {
      client.setNoDelay(true);
      // The handshake has readyTimeout; the SFTP session's start gets the request watchdog's time.
      const stalled = setTimeout(() => fail(lost(s.where, `no SFTP session after ${s.stallTimeoutMs / 1000} s`)), s.stallTimeoutMs);
      client.sftp((e, sftp) => {
        clearTimeout(stalled);
        if (settled) return;
        if (e) return fail(new CofferError("IO", `${s.where}: no SFTP service: ${e.message}`, {}, { cause: e }));
        done();
        resolve(new Connection(client, sftp, s.where, s.stallTimeoutMs));
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

/** One request on `sftp`, through its connection's guard. */
function call<T = void>(sftp: SFTPWrapper, f: (cb: (err: Error | undefined | null, v: T) => void) => void): Promise<T> {
  const conn = owners.get(sftp);
  if (conn === undefined) throw new TypeError("an SFTP session not made by SftpPool");
  return conn.call(f);
}

export const sftpOps = {
  open: (sftp: SFTPWrapper, p: string, flags: OpenMode) => call<Buffer>(sftp, (cb) => sftp.open(p, flags, cb)),
  close: (sftp: SFTPWrapper, h: Buffer) => call(sftp, (cb) => sftp.close(h, cb)),
  fstat: (sftp: SFTPWrapper, h: Buffer) => call<Stats>(sftp, (cb) => sftp.fstat(h, cb)),
  stat: (sftp: SFTPWrapper, p: string) => call<Stats>(sftp, (cb) => sftp.stat(p, cb)),
  readdir: (sftp: SFTPWrapper, p: string) => call<FileEntryWithStats[]>(sftp, (cb) => sftp.readdir(p, cb)),
  mkdir: (sftp: SFTPWrapper, p: string) => call(sftp, (cb) => sftp.mkdir(p, cb)),
  unlink: (sftp: SFTPWrapper, p: string) => call(sftp, (cb) => sftp.unlink(p, cb)),
  /** Plain SFTP rename, which refuses an existing target. */
  renameNoReplace: (sftp: SFTPWrapper, from: string, to: string) => call(sftp, (cb) => sftp.rename(from, to, cb)),
  /** posix-rename@openssh.com: replaces the target atomically (as rename(2)). */
  renameReplace: (sftp: SFTPWrapper, from: string, to: string) => call(sftp, (cb) => sftp.ext_openssh_rename(from, to, cb)),
  fsync: (sftp: SFTPWrapper, h: Buffer) => call(sftp, (cb) => sftp.ext_openssh_fsync(h, cb)),
  // For the importer and exporter: trees, links and attributes.
  lstat: (sftp: SFTPWrapper, p: string) => call<Stats>(sftp, (cb) => sftp.lstat(p, cb)),
  readlink: (sftp: SFTPWrapper, p: string) => call<string>(sftp, (cb) => sftp.readlink(p, cb)),
  symlink: (sftp: SFTPWrapper, target: string, p: string) => call(sftp, (cb) => sftp.symlink(target, p, cb)),
  hardlink: (sftp: SFTPWrapper, existing: string, p: string) => call(sftp, (cb) => sftp.ext_openssh_hardlink(existing, p, cb)),
  setstat: (sftp: SFTPWrapper, p: string, attrs: InputAttributes) => call(sftp, (cb) => sftp.setstat(p, attrs, cb)),
  /** lsetstat@openssh.com: setstat that does not follow a symlink. */
  lsetstat: (sftp: SFTPWrapper, p: string, attrs: InputAttributes) => call(sftp, (cb) => sftp.ext_openssh_lsetstat(p, attrs, cb)),
  fsetstat: (sftp: SFTPWrapper, h: Buffer, attrs: InputAttributes) => call(sftp, (cb) => sftp.fsetstat(h, attrs, cb)),
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
        const got = await call<number>(sftp, (cb) => sftp.read(h, buf, at, end - at, offset + at, cb));
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
  await pipelined(pieces.length, (i) => call(sftp, (cb) => sftp.write(h, pieces[i]!.buf, 0, pieces[i]!.buf.byteLength, pieces[i]!.at, cb)), signal);
}
