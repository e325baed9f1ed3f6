/**
 * The exporter kit on the sftp exporter, writing through a real OpenSSH
 * server (one per file, test/helpers/sshd.ts) into base/target on this
 * machine: readBack() walks the target with readTree (./read-tree.ts), as
 * for the fs exporter, and escaped() lists what appeared in base next to
 * it. SFTP v3 keeps whole-second mtimes, and makes no FIFOs and no
 * extended attributes. Then what only SFTP shows: owners, temp files never
 * left behind, and errors naming the server and the path.
 */
import { randomBytes } from "node:crypto";
import { promises as fsp } from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { builtinRegistry } from "../../src/connectors/builtins.js";
import type { ConnectorOptions, ExportRecord, Exporter, FileInfo } from "../../src/connectors/records.js";
import { exporterKit } from "../../src/sdk/kits/index.js";
import { lacks } from "../helpers/prerequisites.js";
import { hasSshd, type Sshd, startSshd } from "../helpers/sshd.js";
import { vitestHarness } from "./harness.js";
import { readTree } from "./read-tree.js";

const skip = lacks(hasSshd(), "sshd, ssh-keygen and setpriv (openssh-server, openssh-client, util-linux)");
let sshd: Sshd;
let fixtures = 0;

const OPTIONS: ConnectorOptions = { hostname: "testhost", os: "linux", arch: "x64", cwd: "/", maxConcurrency: 4, excludes: [], noXattr: false, env: { HOME: "/nonexistent" } };

function location(dir: string): string {
  return `sftp://${sshd.user}@127.0.0.1:${sshd.port}/${dir}`;
}

function open(dir: string, params: Record<string, string> = {}): Promise<Exporter> {
  return builtinRegistry().make("exporter", location(dir), { identity_file: sshd.identityFile, known_hosts: sshd.knownHosts, ...params }, OPTIONS);
}

async function freshBase(): Promise<string> {
  const base = path.join(sshd.dir, "targets", `t${fixtures++}`);
  await fsp.mkdir(base, { recursive: true });
  return base;
}

function info(name: string, kind: FileInfo["kind"], mode: number, size = 0, extra: Partial<FileInfo> = {}): FileInfo {
  return { name, kind, size, mode, mtimeNs: 1_600_000_000_500_000_000n, dev: 1n, ino: 7n, uid: 0, gid: 0, nlink: 1, ...extra };
}

async function* pieces(data: Uint8Array) {
  yield { offset: 0, length: data.byteLength, data };
}

describe.skipIf(skip)("sftp exporter on OpenSSH", () => {
  beforeAll(async () => {
    sshd = await startSshd();
  });
  afterAll(async () => {
    await sshd?.stop();
  });

  exporterKit(vitestHarness(), "sftp", async () => {
    const base = await freshBase();
    const target = path.join(base, "target");
    return {
      exporter: await open(target, { connections: "2" }),
      supports: { symlinks: true, hardlinks: true, mtimeResolutionNs: 1_000_000_000n },
      readBack: () => readTree(target),
      escaped: async () => (await fsp.readdir(base)).filter((n) => n !== "target").map((n) => path.join(base, n)),
      cleanup: () => fsp.rm(base, { recursive: true, force: true }),
    };
  });

  it("sets owners when asked, replaces a file already there, and leaves no temp file", async () => {
    const target = path.join(await freshBase(), "target");
    await fsp.mkdir(target);
    await fsp.writeFile(path.join(target, "old.txt"), "the old content, longer than the new\n");
    const exp = await open(target, { owners: "true" });
    const data = new Uint8Array(Buffer.from("new\n"));
    const records: ExportRecord[] = [
      { pathname: "/", fileInfo: info("", "dir", 0o755) },
      { pathname: "/owned", fileInfo: info("owned", "file", 0o640, data.byteLength, { uid: 1234, gid: 4321 }), content: () => pieces(data) },
      { pathname: "/old.txt", fileInfo: info("old.txt", "file", 0o600, data.byteLength), content: () => pieces(data) },
      { pathname: "/ln", fileInfo: info("ln", "symlink", 0o777, 5, { uid: 1234, gid: 4321 }), target: "owned" },
    ];
    try {
      for (const r of records) expect(await exp.export(r)).toEqual({ pathname: r.pathname });
      await exp.finish();
    } finally {
      await exp.close();
    }
    const owned = await fsp.lstat(path.join(target, "owned"));
    expect([owned.uid, owned.gid, owned.mode & 0o7777, owned.mtimeMs]).toEqual([1234, 4321, 0o640, 1_600_000_000_000]);
    const ln = await fsp.lstat(path.join(target, "ln"));
    expect([ln.uid, ln.gid, ln.mtimeMs]).toEqual([1234, 4321, 1_600_000_000_000]);
    expect(await fsp.readFile(path.join(target, "old.txt"), "utf8")).toBe("new\n");
    expect((await fsp.readdir(target)).sort()).toEqual(["ln", "old.txt", "owned"]);
  });

  it("a dropped connection mid-file: the file is written again whole, and no temp file is left", async () => {
    const target = path.join(await freshBase(), "target");
    const exp = await open(target, { connections: "2" });
    const data = new Uint8Array(randomBytes(6 * 1024 * 1024 + 3));
    let calls = 0;
    let killed = 0;
    async function* dropping() {
      calls++;
      for (let at = 0; at < data.byteLength; at += 1024 * 1024) {
        if (at === 2 * 1024 * 1024 && calls === 1) killed += sshd.killSessions();
        yield { offset: at, length: Math.min(1024 * 1024, data.byteLength - at), data: data.subarray(at, at + 1024 * 1024) };
      }
    }
    try {
      expect(await exp.export({ pathname: "/", fileInfo: info("", "dir", 0o755) })).toEqual({ pathname: "/" });
      expect(await exp.export({ pathname: "/big", fileInfo: info("big", "file", 0o644, data.byteLength), content: dropping })).toEqual({ pathname: "/big" });
      await exp.finish();
    } finally {
      await exp.close();
    }
    expect(killed).toBeGreaterThan(0);
    expect(calls).toBe(2);
    expect((await fsp.readFile(path.join(target, "big"))).equals(data)).toBe(true);
    expect(await fsp.readdir(target)).toEqual(["big"]);
  });

  it("a FIFO cannot be made over SFTP: its record fails, naming it, and the next succeeds", async () => {
    const target = path.join(await freshBase(), "target");
    const exp = await open(target);
    try {
      expect(await exp.export({ pathname: "/", fileInfo: info("", "dir", 0o755) })).toEqual({ pathname: "/" });
      const r = await exp.export({ pathname: "/fifo", fileInfo: info("fifo", "fifo", 0o644) });
      expect(r.error).toContain("/fifo");
      expect(r.error).toContain("fifo");
      const data = new Uint8Array(Buffer.from("after\n"));
      expect(await exp.export({ pathname: "/after", fileInfo: info("after", "file", 0o644, data.byteLength), content: () => pieces(data) })).toEqual({ pathname: "/after" });
      await exp.finish();
    } finally {
      await exp.close();
    }
  });

  it("bad parameters are usage errors naming them", async () => {
    const target = path.join(await freshBase(), "target");
    await expect(open(target, { owners: "sometimes" })).rejects.toMatchObject({ code: "USAGE", message: expect.stringContaining("owners") });
    await expect(open(target, { connections: "0" })).rejects.toMatchObject({ code: "USAGE", message: expect.stringContaining("connections") });
  });

  it("a target that is a file fails ping(), naming the server and the path", async () => {
    const file = path.join(await freshBase(), "a-file");
    await fsp.writeFile(file, "x");
    const exp = await open(file);
    try {
      await expect(exp.ping()).rejects.toMatchObject({ code: "IO", message: expect.stringContaining(location(file)) });
    } finally {
      await exp.close();
    }
  });
});
