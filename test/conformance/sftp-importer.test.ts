/**
 * The importer kit on the sftp importer, over a real OpenSSH server (one
 * per file, test/helpers/sshd.ts) serving a tree made on this machine:
 * directories, empty, small and multi-request files, symlinks (one
 * dangling), a FIFO, special mode bits, odd names, a wide directory (more
 * entries than one READDIR answer holds). Expected as lstat gives it, with
 * mtimes in whole seconds (all SFTP v3 carries) and the owners the server
 * names. Then what only SFTP shows: errors naming the server and the path.
 */
import { execFileSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { promises as fsp } from "node:fs";
import { userInfo } from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { builtinRegistry } from "../../src/connectors/builtins.js";
import type { ConnectorOptions, Importer, ImportRecord } from "../../src/connectors/records.js";
import { importerKit } from "../../src/sdk/kits/index.js";
import type { ExpectedEntry } from "../../src/sdk/kits/index.js";
import { lacks } from "../helpers/prerequisites.js";
import { hasSshd, type Sshd, startSshd } from "../helpers/sshd.js";
import { vitestHarness } from "./harness.js";

const skip = lacks(hasSshd(), "sshd, ssh-keygen and setpriv (openssh-server, openssh-client, util-linux)");
let sshd: Sshd;

const OPTIONS: ConnectorOptions = { hostname: "testhost", os: "linux", arch: "x64", cwd: "/", maxConcurrency: 4, excludes: [], noXattr: false, env: { HOME: "/nonexistent" } };

function location(dir: string): string {
  return `sftp://${sshd.user}@127.0.0.1:${sshd.port}/${dir}`;
}

function open(dir: string, params: Record<string, string> = {}): Promise<Importer> {
  return builtinRegistry().make("importer", location(dir), { identity_file: sshd.identityFile, known_hosts: sshd.knownHosts, ...params }, OPTIONS);
}

/** The tree the kit imports, made once: its root on the server and the entries expected. */
let tree: Promise<{ root: string; expected: ExpectedEntry[] }> | undefined;

async function makeTree(): Promise<{ root: string; expected: ExpectedEntry[] }> {
  const root = path.join(sshd.dir, "tree");
  await fsp.mkdir(root);
  const abs = (rel: string) => path.join(root, rel);
  const expected: ExpectedEntry[] = [];
  const dir = async (rel: string, mode: number) => {
    await fsp.mkdir(abs(rel));
    await fsp.chmod(abs(rel), mode);
    expected.push({ pathname: `/${rel}`, kind: "dir", mode });
  };
  const file = async (rel: string, content: Buffer, mode: number, extra: Partial<ExpectedEntry> = {}) => {
    await fsp.writeFile(abs(rel), content);
    await fsp.chmod(abs(rel), mode);
    expected.push({ pathname: `/${rel}`, kind: "file", size: content.byteLength, content, mode, ...extra });
  };
  await fsp.chmod(root, 0o755);
  expected.push({ pathname: "/", kind: "dir", mode: 0o755 });
  await dir("a-dir", 0o750);
  await file("a-dir/nested.txt", Buffer.from("nested\n"), 0o640);
  await dir("a-dir/empty-dir", 0o700);
  await dir("a-dir/empty-dir/deeper", 0o755);
  const big = randomBytes(5 * 1024 * 1024 + 17);
  await file("big.bin", big, 0o644, { content: undefined, sha256: createHash("sha256").update(big).digest("hex") });
  await file("empty", Buffer.alloc(0), 0o600);
  await file("setuid", Buffer.from("#!/bin/sh\n"), 0o4750);
  await dir("sticky", 0o1777);
  await file("name with spaces & ünïcode ✓.txt", Buffer.from("odd name\n"), 0o644);
  await dir("wide", 0o755);
  for (let i = 0; i < 300; i++) await file(`wide/f${String(i).padStart(3, "0")}`, Buffer.from(`file ${i}\n`), 0o644);
  execFileSync("mkfifo", ["-m", "640", abs("fifo")]);
  expected.push({ pathname: "/fifo", kind: "fifo", mode: 0o640 });
  await fsp.symlink("a-dir/nested.txt", abs("link"));
  expected.push({ pathname: "/link", kind: "symlink", target: "a-dir/nested.txt" });
  await fsp.symlink("does/not/exist", abs("dangling"));
  expected.push({ pathname: "/dangling", kind: "symlink", target: "does/not/exist" });
  await file("mtime.txt", Buffer.from("exact time\n"), 0o644);
  execFileSync("touch", ["-m", "-d", "@1577934245.123456789", abs("mtime.txt")]);
  // SFTP v3 carries whole seconds: every mtime as the server gives it.
  for (const e of expected) {
    const st = await fsp.lstat(path.join(root, e.pathname), { bigint: true });
    e.mtimeNs = (st.mtimeNs / 1_000_000_000n) * 1_000_000_000n;
  }
  return { root, expected };
}

const h = vitestHarness();

describe.skipIf(skip)("sftp importer on OpenSSH", () => {
  beforeAll(async () => {
    sshd = await startSshd();
  });
  afterAll(async () => {
    await sshd?.stop();
  });

  importerKit(h, "sftp", async () => {
    const t = await (tree ??= makeTree());
    return { importer: await open(t.root, { connections: "2" }), expected: t.expected.map((e) => ({ ...e })), cleanup: async () => {} };
  });

  async function importAll(imp: Importer): Promise<Map<string, ImportRecord>> {
    const out = new Map<string, ImportRecord>();
    try {
      for await (const r of imp.import()) out.set(r.pathname, r);
    } finally {
      await imp.close();
    }
    return out;
  }

  it("gives owners as ids and, where the server names them, names", async () => {
    const t = await (tree ??= makeTree());
    const recs = await importAll(await open(t.root));
    const me = userInfo();
    const small = recs.get("/a-dir/nested.txt")!;
    expect(small.fileInfo).toMatchObject({ uid: me.uid, gid: me.gid, username: me.username, ino: 0n, nlink: 1 });
    expect(typeof small.fileInfo.groupname).toBe("string");
  });

  it("a dropped connection mid-import: listings and reads reconnect, and every file comes whole", async () => {
    const t = await (tree ??= makeTree());
    const imp = await open(t.root, { connections: "2" });
    const digests = new Map<string, string>();
    let killed = 0;
    try {
      for await (const r of imp.import()) {
        if (r.pathname === "/big.bin" || digests.size === 3) killed += sshd.killSessions();
        if (r.fileInfo.kind !== "file" || r.open === undefined) continue;
        const hash = createHash("sha256");
        for await (const piece of await r.open()) {
          hash.update(piece);
          if (r.pathname === "/big.bin" && killed < 3) killed += sshd.killSessions(); // while the pieces are read
        }
        digests.set(r.pathname, hash.digest("hex"));
      }
    } finally {
      await imp.close();
    }
    expect(killed).toBeGreaterThan(0);
    for (const e of t.expected.filter((x) => x.kind === "file")) {
      const want = e.sha256 ?? createHash("sha256").update(e.content as Buffer).digest("hex");
      expect(digests.get(e.pathname), e.pathname).toBe(want);
    }
  });

  it("checks the host key as the store does: a mismatch fails ping(), naming both fingerprints", async () => {
    const t = await (tree ??= makeTree());
    const imp = await open(t.root, { known_hosts: sshd.wrongKnownHosts });
    try {
      const e = (await imp.ping().then(
        () => ({ code: "none", message: "" }),
        (err: unknown) => err,
      )) as { code: string; message: string };
      expect(e.code).toBe("IO");
      expect(e.message).toContain("host key mismatch");
      expect(e.message).toContain(sshd.hostKeyFingerprint);
      expect(e.message).toContain(sshd.otherHostKeyFingerprint);
    } finally {
      await imp.close();
    }
  });

  it("a missing root fails the import, naming the server and the path", async () => {
    const missing = path.join(sshd.dir, "no-such-tree");
    const imp = await open(missing);
    await expect(imp.ping()).rejects.toMatchObject({ code: "IO", message: expect.stringContaining(`${location(missing)}: no such file or directory`) });
    await expect(importAll(imp)).rejects.toMatchObject({ code: "IO", message: expect.stringContaining(location(missing)) });
  });

  it("excludes are matched against paths below the root, directories with a trailing slash", async () => {
    const t = await (tree ??= makeTree());
    const imp = await builtinRegistry().make("importer", location(t.root), { identity_file: sshd.identityFile, known_hosts: sshd.knownHosts }, { ...OPTIONS, excludes: ["wide/", "*.bin"] });
    const recs = await importAll(imp);
    expect([...recs.keys()].filter((p) => p.startsWith("/wide") || p.endsWith(".bin"))).toEqual([]);
    expect(recs.has("/a-dir/nested.txt")).toBe(true);
  });
});
