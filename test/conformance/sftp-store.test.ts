/**
 * Runs the Store conformance suite against the sftp store on a real
 * OpenSSH server (one per file, test/helpers/sshd.ts; a fresh directory
 * per test), plus what only SFTP shows: the host-key rules, a key the
 * server refuses, the layout on the server, pipelined objects larger than
 * one request, and a connection dropped under the store.
 */
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createRequire } from "node:module";
import { Socket } from "node:net";
import { promises as fsp } from "node:fs";
import * as path from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { builtinRegistry } from "../../src/connectors/builtins.js";
import { Resource } from "../../src/connectors/flags.js";
import type { ConnectorOptions } from "../../src/connectors/records.js";
import type { Store } from "../../src/connectors/store.js";
import { toHex } from "../../src/util/hex.js";
import { lacks, skipOrFail } from "../helpers/prerequisites.js";
import { canAddPasswordUser, hasSshAgent, hasSshd, type Sshd, startSshAgent, startSshd } from "../helpers/sshd.js";
import { storeConformance } from "./store.js";

const skip = lacks(hasSshd(), "sshd, ssh-keygen and setpriv (openssh-server, openssh-client, util-linux)");
let sshd: Sshd;
let fixtures = 0;

const OPTIONS: ConnectorOptions = { hostname: "testhost", os: "linux", arch: "x64", cwd: "/", maxConcurrency: 4, excludes: [], noXattr: false, env: { HOME: "/nonexistent" } };

/** An sftp store on the test server at the absolute directory `dir`, with the test's key and known_hosts unless `params` says otherwise. */
function open(dir: string, params: Record<string, string> = {}, readOnly = false): Promise<Store> {
  return openAs(sshd.user, dir, { identity_file: sshd.identityFile, ...params }, {}, readOnly);
}

/** An sftp store as `user`, with only the credentials `params` and `env` give. */
function openAs(user: string, dir: string, params: Record<string, string>, env: Record<string, string>, readOnly = false): Promise<Store> {
  const location = `sftp://${user}@127.0.0.1:${sshd.port}/${dir}`;
  return builtinRegistry().make("storage", location, { known_hosts: sshd.knownHosts, ...params }, { ...OPTIONS, env: { ...OPTIONS.env, ...env }, readOnly });
}

async function freshDir(): Promise<string> {
  const dir = path.join(sshd.dir, "repos", `r${fixtures++}`);
  await fsp.mkdir(path.dirname(dir), { recursive: true });
  return dir;
}

const mac = () => new Uint8Array(randomBytes(32));

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

describe.skipIf(skip)("sftp store on OpenSSH", () => {
  beforeAll(async () => {
    sshd = await startSshd({ passwordUser: canAddPasswordUser() });
  });
  afterAll(async () => {
    await sshd?.stop();
  });

  storeConformance("sftp", async () => {
    const dir = await freshDir();
    const stores = [await open(dir)];
    return {
      store: stores[0]!,
      readOnly: async () => {
        stores.push(await open(dir, {}, true));
        return stores.at(-1)!;
      },
      cleanup: async () => {
        await Promise.all(stores.map((s) => s.close()));
        await fsp.rm(dir, { recursive: true, force: true });
      },
    };
  }, { replaceConfig: true, stage: true });

  it("keeps the fs store's layout, and objects larger than many requests come back whole, in ranges too", async () => {
    const dir = await freshDir();
    const store = await open(dir, { connections: "2" });
    try {
      await store.create(new Uint8Array([1, 2, 3]));
      const big = new Uint8Array(randomBytes(5 * 1024 * 1024 + 17));
      const p = mac();
      expect(await store.put(Resource.PACKFILE, p, big)).toBe(big.byteLength);
      const hex = toHex(p);
      expect((await fsp.stat(path.join(dir, "packfiles", hex.slice(0, 2), hex))).size).toBe(big.byteLength);
      expect(Buffer.from(await store.get(Resource.PACKFILE, p)).equals(big)).toBe(true);
      const range = { offset: 300_001, length: 2 * 1024 * 1024 + 5 };
      expect(Buffer.from(await store.get(Resource.PACKFILE, p, range)).equals(big.subarray(range.offset, range.offset + range.length))).toBe(true);
      expect([...(await fsp.readFile(path.join(dir, "CONFIG")))]).toEqual([1, 2, 3]);
      expect(await fsp.readdir(path.join(dir, "tmp"))).toEqual([]);
    } finally {
      await store.close();
    }
  });

  it("replaceConfig under a lock another run left: LOCKED naming the lock, CONFIG kept; replaced once the lock is gone", async () => {
    const dir = await freshDir();
    const store = await open(dir);
    try {
      await store.create(new Uint8Array([1, 2, 3]));
      const lock = path.join(dir, "tmp", "config.replacing.tmp");
      await fsp.writeFile(lock, "another run\n");
      const refused = await store.replaceConfig!(new Uint8Array([4]), new Uint8Array([1, 2, 3])).catch((e: unknown) => e);
      expect(refused).toMatchObject({ code: "LOCKED" });
      expect(String(refused)).toContain("tmp/config.replacing.tmp");
      expect([...(await fsp.readFile(path.join(dir, "CONFIG")))]).toEqual([1, 2, 3]);
      expect(await fsp.readFile(lock, "utf8")).toBe("another run\n");
      await fsp.rm(lock);
      await store.replaceConfig!(new Uint8Array([4]), new Uint8Array([1, 2, 3]));
      expect([...(await fsp.readFile(path.join(dir, "CONFIG")))]).toEqual([4]);
      expect(await fsp.readdir(path.join(dir, "tmp"))).toEqual([]);
    } finally {
      await store.close();
    }
  });

  it("reads and writes keep several requests in flight, each of the length the server gives in limits@openssh.com, on a TCP_NODELAY socket", async () => {
    // ssh2's SFTP session class, as the store loads it: its read and write are wrapped to watch the requests.
    const { SFTP } = createRequire(import.meta.url)("ssh2/lib/protocol/SFTP.js") as { SFTP: { prototype: Record<string, unknown> } };
    const seen = { read: { lengths: [] as number[], limits: new Set<number>(), inFlight: 0, most: 0 }, write: { lengths: [] as number[], limits: new Set<number>(), inFlight: 0, most: 0 } };
    const original = { read: SFTP.prototype.read, write: SFTP.prototype.write };
    for (const op of ["read", "write"] as const) {
      const counts = seen[op];
      SFTP.prototype[op] = function (this: { _maxReadLen: number; _maxWriteLen: number }, ...args: unknown[]) {
        counts.lengths.push(args[3] as number);
        counts.limits.add(op === "read" ? this._maxReadLen : this._maxWriteLen);
        counts.most = Math.max(counts.most, ++counts.inFlight);
        const cb = args[5] as (...r: unknown[]) => void;
        args[5] = (...r: unknown[]) => {
          counts.inFlight--;
          cb(...r);
        };
        return (original[op] as (...a: unknown[]) => unknown).apply(this, args);
      };
    }
    // And TCP_NODELAY on the connection's socket (ssh2 would otherwise wait on Nagle at each small write).
    const setNoDelay = Socket.prototype.setNoDelay;
    let noDelay = 0;
    Socket.prototype.setNoDelay = function (this: Socket, on?: boolean) {
      if (on === true) noDelay++;
      return setNoDelay.call(this, on);
    };
    const dir = await freshDir();
    const store = await open(dir, { connections: "1" });
    try {
      await store.create(new Uint8Array([9]));
      const data = new Uint8Array(randomBytes(8 * 1024 * 1024));
      const m = mac();
      await store.put(Resource.PACKFILE, m, data);
      expect(Buffer.from(await store.get(Resource.PACKFILE, m)).equals(data)).toBe(true);
    } finally {
      Object.assign(SFTP.prototype, original);
      Socket.prototype.setNoDelay = setNoDelay;
      await store.close();
    }
    expect(noDelay).toBe(1);
    // OpenSSH's sftp-server answers limits@openssh.com with 256 KiB less 1 KiB; ssh2's own guess would be 256 KiB less 2 KiB.
    for (const op of ["read", "write"] as const) {
      expect([...seen[op].limits], op).toEqual([255 * 1024]);
      expect(seen[op].most, `${op}s in flight at once`).toBeGreaterThan(4);
      const full = seen[op].lengths.filter((n) => n === 255 * 1024).length;
      expect(full, `${op}s of the full length`).toBe(Math.floor((8 * 1024 * 1024) / (255 * 1024)));
    }
  });

  describe("stage()", () => {
    const parts = (n: number, size: number) => Array.from({ length: n }, () => new Uint8Array(randomBytes(size)));

    it("writes as the bytes come and commits them whole under the name; abort leaves nothing; read-only refuses", async () => {
      const dir = await freshDir();
      const store = await open(dir, { connections: "2" });
      try {
        await store.create(new Uint8Array([10]));
        const staged = await store.stage!(Resource.PACKFILE);
        const written = [...parts(3, 700_001), new Uint8Array(0), ...parts(2, 13)];
        await staged.write(written.slice(0, 2));
        await staged.write(written.slice(2));
        const m = mac();
        expect(await staged.commit(m)).toBe(2 * 700_001 + 700_001 + 26);
        expect(Buffer.from(await store.get(Resource.PACKFILE, m)).equals(Buffer.concat(written))).toBe(true);
        await expect(staged.write(parts(1, 10))).rejects.toMatchObject({ code: "IO", message: expect.stringContaining("after its end") });
        const dropped = await store.stage!(Resource.PACKFILE);
        await dropped.write(parts(1, 1000));
        await dropped.abort();
        expect(await fsp.readdir(path.join(dir, "tmp"))).toEqual([]);
        expect((await collect(store.list(Resource.PACKFILE))).map(toHex)).toEqual([toHex(m)]);
        const ro = await open(dir, {}, true);
        await expect(ro.stage!(Resource.PACKFILE)).rejects.toMatchObject({ code: "READ_ONLY" });
        await ro.close();
      } finally {
        await store.close();
      }
    });

    it("sessions killed between and during writes: the writes are done again on fresh connections and the object is whole", async () => {
      const dir = await freshDir();
      const store = await open(dir, { connections: "2" });
      try {
        await store.create(new Uint8Array([11]));
        const staged = await store.stage!(Resource.PACKFILE);
        const written = parts(6, 2_000_000);
        await staged.write(written.slice(0, 2));
        expect(sshd.killSessions()).toBeGreaterThan(0);
        await staged.write(written.slice(2, 4));
        const during = staged.write(written.slice(4));
        sshd.killSessions();
        await during;
        const m = mac();
        await staged.commit(m);
        expect(Buffer.from(await store.get(Resource.PACKFILE, m)).equals(Buffer.concat(written))).toBe(true);
      } finally {
        await store.close();
      }
    });
  });

  describe("host keys and credentials", () => {
    async function failure(params: Record<string, string>): Promise<{ code: string; message: string }> {
      return failureOf(await open(await freshDir(), params));
    }

    /** How a ping of `store` fails (code "none" if it does not), closing it. */
    async function failureOf(store: Store): Promise<{ code: string; message: string }> {
      try {
        return (await store.ping().then(
          () => ({ code: "none", message: "" }),
          (e: unknown) => e,
        )) as { code: string; message: string };
      } finally {
        await store.close();
      }
    }

    it("a host key other than known_hosts lists is refused, naming the host and both fingerprints", async () => {
      const e = await failure({ known_hosts: sshd.wrongKnownHosts });
      expect(e.code).toBe("IO");
      expect(e.message).toContain("host key mismatch");
      expect(e.message).toContain(`[127.0.0.1]:${sshd.port}`);
      expect(e.message).toContain(sshd.hostKeyFingerprint);
      expect(e.message).toContain(sshd.otherHostKeyFingerprint);
    });

    it("an unknown host is refused, naming its key's fingerprint", async () => {
      const empty = path.join(sshd.dir, "empty_known_hosts");
      await fsp.writeFile(empty, "");
      const e = await failure({ known_hosts: empty });
      expect(e.code).toBe("IO");
      expect(e.message).toContain("unknown host");
      expect(e.message).toContain(sshd.hostKeyFingerprint);
    });

    it("a pinned fingerprint: the right one connects, another is refused naming both", async () => {
      const right = await open(await freshDir(), { host_key_fingerprint: sshd.hostKeyFingerprint, known_hosts: "/nonexistent" });
      await expect(right.ping()).rejects.toMatchObject({ code: "NO_REPOSITORY" });
      await right.close();
      const e = await failure({ host_key_fingerprint: sshd.otherHostKeyFingerprint });
      expect(e.code).toBe("IO");
      expect(e.message).toContain(sshd.hostKeyFingerprint);
      expect(e.message).toContain(sshd.otherHostKeyFingerprint);
    });

    /** A known_hosts file of `lines`, with `{right}` and `{other}` standing for the server's key and another (each "TYPE BASE64"). */
    async function knownHosts(name: string, ...lines: string[]): Promise<string> {
      const right = (await fsp.readFile(sshd.knownHosts, "utf8")).trim().split(" ").slice(1).join(" ");
      const other = (await fsp.readFile(sshd.wrongKnownHosts, "utf8")).trim().split(" ").slice(1).join(" ");
      const file = path.join(sshd.dir, `known_hosts-${name}`);
      await fsp.writeFile(file, lines.map((l) => `${l.replace("{right}", right).replace("{other}", other)}\n`).join(""));
      return file;
    }

    /** Resolves when the store connects (a ping of a missing repository reaches the server). */
    async function connects(params: Record<string, string>): Promise<void> {
      const store = await open(await freshDir(), params);
      try {
        await expect(store.ping()).rejects.toMatchObject({ code: "NO_REPOSITORY" });
      } finally {
        await store.close();
      }
    }

    it("hashed known_hosts entries (ssh-keygen -H) are matched: the right key connects, another is a mismatch", async () => {
      const name = `[127.0.0.1]:${sshd.port}`;
      const good = await knownHosts("hashed", `${name} {right}`);
      const bad = await knownHosts("hashed-wrong", `${name} {other}`);
      for (const f of [good, bad]) execFileSync("ssh-keygen", ["-H", "-f", f], { stdio: "ignore" });
      expect(await fsp.readFile(good, "utf8")).toMatch(/^\|1\|/);
      expect(await fsp.readFile(good, "utf8")).not.toContain("127.0.0.1");
      await connects({ known_hosts: good });
      const e = await failure({ known_hosts: bad });
      expect(e.message).toContain("host key mismatch");
      expect(e.message).toContain(sshd.hostKeyFingerprint);
      expect(e.message).toContain(sshd.otherHostKeyFingerprint);
    });

    it("wildcard patterns match, and a negated pattern excludes the host", async () => {
      await connects({ known_hosts: await knownHosts("wildcard", `other.example,[127.0.0.?]:${sshd.port} {right}`) });
      const negated = await knownHosts("negated", `[127.0.0.*]:*,![127.0.0.1]:${sshd.port} {right}`);
      expect((await failure({ known_hosts: negated })).message).toContain("unknown host");
    });

    it("a key marked @revoked is refused even when another line lists it", async () => {
      const file = await knownHosts("revoked", `[127.0.0.1]:${sshd.port} {right}`, `@revoked * {right}`);
      const e = await failure({ known_hosts: file });
      expect(e.code).toBe("IO");
      expect(e.message).toContain("@revoked");
      expect(e.message).toContain(sshd.hostKeyFingerprint);
      expect(e.message).toContain(file);
    });

    it("insecure_ignore_host_key connects whatever known_hosts says", async () => {
      await connects({ known_hosts: sshd.wrongKnownHosts, insecure_ignore_host_key: "true" });
    });

    it("a key the server does not accept fails authentication, naming the key", async () => {
      const e = await failure({ identity_file: sshd.otherIdentityFile });
      expect(e.code).toBe("IO");
      expect(e.message).toContain("authentication failed");
      expect(e.message).toContain(sshd.otherIdentityFile);
    });

    it("the ssh agent at SSH_AUTH_SOCK: its key logs in; an agent without it, or no agent at its socket, is a clear error", async (t) => {
      if (!hasSshAgent()) skipOrFail(t, "ssh-agent and ssh-add (openssh-client)");
      const agent = await startSshAgent(sshd.dir);
      const other = await startSshAgent(sshd.dir);
      try {
        agent.add(sshd.identityFile);
        other.add(sshd.otherIdentityFile);
        const dir = await freshDir();
        const store = await openAs(sshd.user, dir, {}, { SSH_AUTH_SOCK: agent.socket });
        try {
          await store.create(new Uint8Array([7]));
          expect([...(await store.open())]).toEqual([7]);
        } finally {
          await store.close();
        }
        const refused = await failureOf(await openAs(sshd.user, await freshDir(), {}, { SSH_AUTH_SOCK: other.socket }));
        expect(refused.code).toBe("IO");
        expect(refused.message).toContain(`authentication failed (tried the agent at ${other.socket})`);
        const gone = path.join(sshd.dir, "no-agent.sock");
        const missing = await failureOf(await openAs(sshd.user, await freshDir(), {}, { SSH_AUTH_SOCK: gone }));
        expect(missing.code).toBe("IO");
        expect(missing.message).toContain(`authentication failed (tried the agent at ${gone}); the agent at ${gone} failed`);
      } finally {
        await agent.stop();
        await other.stop();
      }
    });

    it("password_file: the password logs in; a wrong one is refused naming the file", async (t) => {
      if (!sshd.password) return skipOrFail(t, "root, unshare and mount (util-linux) and openssl, to add a password user in sshd's own mount namespace");
      const { user, file, writable } = sshd.password;
      const dir = path.join(writable, `r${fixtures++}`);
      const store = await openAs(user, dir, { password_file: file }, {});
      try {
        await store.create(new Uint8Array([8]));
        const m = mac();
        const data = new Uint8Array(randomBytes(700_000));
        await store.put(Resource.PACKFILE, m, data);
        expect(Buffer.from(await store.get(Resource.PACKFILE, m)).equals(data)).toBe(true);
      } finally {
        await store.close();
      }
      const wrong = path.join(sshd.dir, "wrong-password");
      await fsp.writeFile(wrong, "not the password\n");
      const e = await failureOf(await openAs(user, await freshDir(), { password_file: wrong }, {}));
      expect(e.code).toBe("IO");
      expect(e.message).toContain(`authentication failed (tried the password of ${wrong})`);
      const none = await failureOf(await openAs(user, await freshDir(), { password_file: path.join(sshd.dir, "nonexistent") }, {}));
      expect(none.code).toBe("USAGE");
      expect(none.message).toContain("cannot read password_file");
    });

    it("bad parameters are usage errors naming them", async () => {
      await expect(open(await freshDir(), { connections: "0" })).rejects.toMatchObject({ code: "USAGE" });
      await expect(open(await freshDir(), { host_key_fingerprint: "MD5:xx" })).rejects.toMatchObject({ code: "USAGE" });
      await expect(open(await freshDir(), { port: "2" })).rejects.toMatchObject({ code: "USAGE", message: expect.stringContaining("port") });
      await expect(builtinRegistry().make("storage", "sftp://127.0.0.1", {}, OPTIONS)).rejects.toMatchObject({ code: "USAGE", message: expect.stringContaining("no path") });
    });
  });

  it("a server that stops answering: the watchdog fails the connection and the operation succeeds on a fresh one", async () => {
    const dir = await freshDir();
    const store = await open(dir, { connections: "1", timeout: "1s" });
    try {
      await store.create(new Uint8Array([5]));
      const o = { m: mac(), data: new Uint8Array(randomBytes(3_000_000)) };
      await store.put(Resource.PACKFILE, o.m, o.data);
      expect(sshd.stopSessions()).toBeGreaterThan(0);
      expect(Buffer.from(await store.get(Resource.PACKFILE, o.m)).equals(o.data)).toBe(true);
      const p = { m: mac(), data: new Uint8Array(randomBytes(1_000_000)) };
      expect(sshd.stopSessions()).toBeGreaterThan(0);
      await store.put(Resource.PACKFILE, p.m, p.data);
      expect(Buffer.from(await store.get(Resource.PACKFILE, p.m)).equals(p.data)).toBe(true);
    } finally {
      sshd.killSessions();
      await store.close();
    }
  });

  it("an abort cancels requests the server does not answer", async () => {
    const dir = await freshDir();
    const store = await open(dir, { connections: "1", timeout: "1h" });
    try {
      await store.create(new Uint8Array([6]));
      const o = { m: mac(), data: new Uint8Array(randomBytes(2_000_000)) };
      await store.put(Resource.PACKFILE, o.m, o.data);
      expect(sshd.stopSessions()).toBeGreaterThan(0);
      const ac = new AbortController();
      const got = store.get(Resource.PACKFILE, o.m, undefined, { signal: ac.signal });
      // Abort once the requests are sent: unanswered, they would wait for the keepalives (45 s and more), past this test's limit.
      await delay(300);
      ac.abort();
      await expect(got).rejects.toMatchObject({ code: "INTERRUPTED" });
      const put = store.put(Resource.PACKFILE, mac(), o.data, { signal: ac.signal });
      await expect(put).rejects.toMatchObject({ code: "INTERRUPTED" });
    } finally {
      sshd.killSessions();
      await store.close();
    }
  }, 30_000);

  it("a dropped connection: the operations after it reconnect and succeed", async () => {
    const dir = await freshDir();
    const store = await open(dir, { connections: "2" });
    try {
      await store.create(new Uint8Array([4]));
      const objs = Array.from({ length: 6 }, () => ({ m: mac(), data: new Uint8Array(randomBytes(600_000)) }));
      for (const o of objs.slice(0, 3)) await store.put(Resource.PACKFILE, o.m, o.data);
      expect(sshd.killSessions()).toBeGreaterThan(0);
      // In flight while the sessions die, and after.
      await Promise.all(objs.slice(3).map((o) => store.put(Resource.PACKFILE, o.m, o.data)));
      for (const o of objs) expect(Buffer.from(await store.get(Resource.PACKFILE, o.m)).equals(o.data)).toBe(true);
    } finally {
      await store.close();
    }
  });
});
