/**
 * Runs the Store conformance suite against the sftp store on a real
 * OpenSSH server (one per file, test/helpers/sshd.ts; a fresh directory
 * per test), plus what only SFTP shows: the host-key rules, a key the
 * server refuses, the layout on the server, pipelined objects larger than
 * one request, and a connection dropped under the store.
 */
import { randomBytes } from "node:crypto";
import { promises as fsp } from "node:fs";
import * as path from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { builtinRegistry } from "../../src/connectors/builtins.js";
import { Resource } from "../../src/connectors/flags.js";
import type { ConnectorOptions } from "../../src/connectors/records.js";
import type { Store } from "../../src/connectors/store.js";
import { toHex } from "../../src/util/hex.js";
import { lacks } from "../helpers/prerequisites.js";
import { hasSshd, type Sshd, startSshd } from "../helpers/sshd.js";
import { storeConformance } from "./store.js";

const skip = lacks(hasSshd(), "sshd, ssh-keygen and setpriv (openssh-server, openssh-client, util-linux)");
let sshd: Sshd;
let fixtures = 0;

const OPTIONS: ConnectorOptions = { hostname: "testhost", os: "linux", arch: "x64", cwd: "/", maxConcurrency: 4, excludes: [], noXattr: false, env: { HOME: "/nonexistent" } };

/** An sftp store on the test server at the absolute directory `dir`, with the test's key and known_hosts unless `params` says otherwise. */
function open(dir: string, params: Record<string, string> = {}, readOnly = false): Promise<Store> {
  const location = `sftp://${sshd.user}@127.0.0.1:${sshd.port}/${dir}`;
  return builtinRegistry().make("storage", location, { identity_file: sshd.identityFile, known_hosts: sshd.knownHosts, ...params }, { ...OPTIONS, readOnly });
}

async function freshDir(): Promise<string> {
  const dir = path.join(sshd.dir, "repos", `r${fixtures++}`);
  await fsp.mkdir(path.dirname(dir), { recursive: true });
  return dir;
}

const mac = () => new Uint8Array(randomBytes(32));

describe.skipIf(skip)("sftp store on OpenSSH", () => {
  beforeAll(async () => {
    sshd = await startSshd();
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
  });

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

  describe("host keys and credentials", () => {
    async function failure(params: Record<string, string>): Promise<{ code: string; message: string }> {
      const store = await open(await freshDir(), params);
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

    it("a key the server does not accept fails authentication, naming the key", async () => {
      const e = await failure({ identity_file: sshd.otherIdentityFile });
      expect(e.code).toBe("IO");
      expect(e.message).toContain("authentication failed");
      expect(e.message).toContain(sshd.otherIdentityFile);
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
