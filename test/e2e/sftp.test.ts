/**
 * The BUILT CLI (run `npm run build` first) at an sftp:// repository on a
 * real OpenSSH server (test/helpers/sshd.ts): create, backup, restore and
 * check, prune and maintenance; the sessions killed mid-backup (the backup retries and succeeds, or
 * fails cleanly, and the repository stays whole); the host key checked
 * against ~/.ssh/known_hosts; an unknown host refused with a clear message
 * and no stack trace; and ssh2 loaded only for an sftp:// location.
 */
import { execFileSync } from "node:child_process";
import { promises as fsp } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { builtCliExists, coffer, type Env, EXIT, expectExit, expectNoStackTrace, FAST_KDF, PROJECT_ROOT, startCoffer } from "../helpers/cli.js";
import { pruneAndMaintain } from "../helpers/lifecycle.js";
import { lacks } from "../helpers/prerequisites.js";
import { hasSshd, type Sshd, startSshd } from "../helpers/sshd.js";
import { compareTrees, writeSeededFile } from "../helpers/tree.js";

const PASS = "correct horse battery staple";
const skip = lacks(hasSshd(), "sshd, ssh-keygen and setpriv (openssh-server, openssh-client, util-linux)") || lacks(builtCliExists(), "the built CLI (npm run build)");

let sshd: Sshd;
let base = "";
let home = "";
let counter = 0;

function fresh(name: string): string {
  return path.join(base, `${String(++counter).padStart(3, "0")}-${name}`);
}

function env(extra: Env = {}): Env {
  return { HOME: home, TMPDIR: path.join(base, "tmp"), COFFER_PASSPHRASE: PASS, ...extra };
}

/** The sftp:// location of `dir` on the test server. */
function at(dir: string): string {
  return `sftp://${sshd.user}@127.0.0.1:${sshd.port}/${dir}`;
}

async function run(args: string[], code: number = EXIT.OK, extraEnv: Env = {}) {
  const r = await coffer(["--store-opt", `identity_file=${sshd.identityFile}`, ...args], { env: env(extraEnv), cwd: base });
  expectNoStackTrace(r);
  return expectExit(r, code);
}

async function makeTree(dir: string, files: number, size: number): Promise<void> {
  await fsp.mkdir(path.join(dir, "sub"), { recursive: true });
  await fsp.writeFile(path.join(dir, "small.txt"), "hello over ssh\n");
  for (let i = 0; i < files; i++) await writeSeededFile(path.join(dir, i % 2 ? "sub" : "", `f${i}.bin`), `sftp-${i}`, size);
}

/** Packfiles stored under `repo`'s fan-out directories. */
async function storedPackfiles(repo: string): Promise<number> {
  const top = path.join(repo, "packfiles");
  let n = 0;
  for (const d of await fsp.readdir(top).catch(() => [])) n += (await fsp.readdir(path.join(top, d)).catch(() => [])).length;
  return n;
}

describe.skipIf(skip)("coffer at sftp://", () => {
  beforeAll(async () => {
    sshd = await startSshd();
    base = await fsp.mkdtemp(path.join(tmpdir(), "coffer-e2e-sftp-"));
    home = path.join(base, "home");
    await fsp.mkdir(path.join(home, ".ssh"), { recursive: true });
    await fsp.mkdir(path.join(base, "tmp"));
    // The default known_hosts: the user's.
    await fsp.copyFile(sshd.knownHosts, path.join(home, ".ssh", "known_hosts"));
  });
  afterAll(async () => {
    await sshd?.stop();
    if (base) await fsp.rm(base, { recursive: true, force: true });
  });

  it("prune and maintenance: removed snapshots' packfiles deleted, the kept one checked and restored", async () => {
    await pruneAndMaintain((args) => run(args), at(path.join(sshd.dir, "lifecycle-repo")), fresh("lifecycle"));
  });

  it("create, backup, restore and check", async () => {
    const src = fresh("src");
    await makeTree(src, 6, 700 * 1024);
    const repo = path.join(sshd.dir, "e2e-repo");
    await run(["at", at(repo), "create", ...FAST_KDF]);
    expect((await fsp.readdir(repo)).sort()).toEqual(["CONFIG", "locks", "packfiles", "states", "tmp"]);
    await run(["at", at(repo), "backup", src]);
    await run(["at", at(repo), "backup", src]); // no change
    const to = fresh("restored");
    await run(["at", at(repo), "restore", "--to", to]);
    expect(await compareTrees(src, to)).toEqual([]);
    await run(["at", at(repo), "check", "--read-data"]);
    // A second create at the same place is refused.
    const again = await run(["at", at(repo), "create", ...FAST_KDF], EXIT.ERROR);
    expect(again.stderr).toContain("already exists");
  });

  it("sessions killed mid-backup: the backup retries or fails cleanly; then backup, restore and check succeed", async () => {
    const src = fresh("src");
    await makeTree(src, 24, 4 * 1024 * 1024);
    const repo = path.join(sshd.dir, "dropped-repo");
    await run(["at", at(repo), "create", ...FAST_KDF]);
    // A backup that hangs is killed, and fails the test, long before the test's own limit.
    const job = startCoffer(["--store-opt", `identity_file=${sshd.identityFile}`, "at", at(repo), "backup", src], { env: env(), cwd: base, timeoutMs: 60_000 });
    const exited = job.result.then(() => true);
    // Each time a packfile appears on the server, up to three times, every session dies under the backup.
    let killed = 0;
    let kills = 0;
    let stored = 0;
    while (kills < 3 && !(await Promise.race([exited, delay(20).then(() => false)]))) {
      const n = await storedPackfiles(repo);
      if (n > stored) {
        stored = n;
        killed += sshd.killSessions();
        kills++;
      }
    }
    const r = await job.result;
    expectNoStackTrace(r);
    expectExit(r, EXIT.OK, EXIT.ERROR);
    expect(killed, "the backup ended before a packfile was stored").toBeGreaterThan(0);
    if (r.exitCode === EXIT.ERROR) expect(r.stderr).toMatch(/sftp:\/\/.*connection/);
    await run(["at", at(repo), "backup", src]);
    const to = fresh("restored");
    await run(["at", at(repo), "restore", "--to", to]);
    expect(await compareTrees(src, to)).toEqual([]);
    await run(["at", at(repo), "check", "--read-data"]);
  });

  it("an unknown host is an error naming the host and its fingerprint, exit 1, no stack trace", async () => {
    const empty = path.join(base, "empty_known_hosts");
    await fsp.writeFile(empty, "");
    const r = await run(["--store-opt", `known_hosts=${empty}`, "at", at(path.join(sshd.dir, "nowhere")), "create", ...FAST_KDF], EXIT.ERROR);
    expect(r.stderr).toContain("unknown host");
    expect(r.stderr).toContain(`[127.0.0.1]:${sshd.port}`);
    expect(r.stderr).toContain(sshd.hostKeyFingerprint);
    const m = await run(["--store-opt", `known_hosts=${sshd.wrongKnownHosts}`, "at", at(path.join(sshd.dir, "nowhere")), "create", ...FAST_KDF], EXIT.ERROR);
    expect(m.stderr).toContain("host key mismatch");
    expect(m.stderr).toContain(sshd.hostKeyFingerprint);
    expect(m.stderr).toContain(sshd.otherHostKeyFingerprint);
    expect(m.stderr).toContain(sshd.wrongKnownHosts);
  });

  it("a pinned fingerprint, @revoked and insecure_ignore_host_key through the CLI", async () => {
    const repo = path.join(sshd.dir, "pinned-repo");
    const pinned = ["--store-opt", `known_hosts=${sshd.wrongKnownHosts}`, "--store-opt", `host_key_fingerprint=${sshd.hostKeyFingerprint}`];
    await run([...pinned, "at", at(repo), "create", ...FAST_KDF]);
    const wrong = await run(["--store-opt", `host_key_fingerprint=${sshd.otherHostKeyFingerprint}`, "at", at(repo), "ls"], EXIT.ERROR);
    expect(wrong.stderr).toContain("host key mismatch");
    expect(wrong.stderr).toContain(sshd.hostKeyFingerprint);
    expect(wrong.stderr).toContain(`host_key_fingerprint expects ${sshd.otherHostKeyFingerprint}`);
    const revoked = path.join(base, "revoked_known_hosts");
    await fsp.writeFile(revoked, `${await fsp.readFile(sshd.knownHosts, "utf8")}@revoked ${await fsp.readFile(sshd.knownHosts, "utf8")}`);
    const r = await run(["--store-opt", `known_hosts=${revoked}`, "at", at(repo), "ls"], EXIT.ERROR);
    expect(r.stderr).toContain(`is marked @revoked in ${revoked}`);
    await run(["--store-opt", `known_hosts=${sshd.wrongKnownHosts}`, "--store-opt", "insecure_ignore_host_key=true", "at", at(repo), "ls"]);
    const both = await run(["--store-opt", "insecure_ignore_host_key=true", "--store-opt", `host_key_fingerprint=${sshd.hostKeyFingerprint}`, "at", at(repo), "ls"], EXIT.USAGE);
    expect(both.stderr).toContain("exclude each other");
  });

  it("a key the server refuses and an agent that is not there: clear errors through the CLI, exit 1", async () => {
    const where = at(path.join(sshd.dir, "nowhere"));
    const key = await coffer(["--store-opt", `identity_file=${sshd.otherIdentityFile}`, "at", where, "ls"], { env: env(), cwd: base });
    expectNoStackTrace(key);
    expectExit(key, EXIT.ERROR);
    expect(key.stderr).toContain(`authentication failed (tried the key ${sshd.otherIdentityFile})`);
    const gone = path.join(base, "no-agent.sock");
    const agent = await coffer(["at", where, "ls"], { env: env({ SSH_AUTH_SOCK: gone }), cwd: base });
    expectNoStackTrace(agent);
    expectExit(agent, EXIT.ERROR);
    expect(agent.stderr).toContain(`authentication failed (tried the agent at ${gone}); the agent at ${gone} failed`);
    const none = await coffer(["at", where, "ls"], { env: env({ SSH_AUTH_SOCK: undefined }), cwd: base });
    expectNoStackTrace(none);
    expectExit(none, EXIT.USAGE);
    expect(none.stderr).toContain("no credentials");
  });

  it("ssh2 is loaded for an sftp:// location only", () => {
    const script = `
      import { createRequire } from "node:module";
      const { builtinRegistry } = await import(${JSON.stringify(path.join(PROJECT_ROOT, "dist", "connectors", "builtins.js"))});
      const loaded = () => Object.keys(createRequire(import.meta.url).cache).filter((k) => k.includes("/node_modules/ssh2/")).length;
      const r = builtinRegistry();
      const o = { hostname: "h", os: "linux", arch: "x64", cwd: "/", maxConcurrency: 1, excludes: [], noXattr: false, env: {} };
      await r.make("storage", ${JSON.stringify(path.join(base, "local-repo"))}, {}, o);
      const before = loaded();
      await r.make("storage", "sftp://u@127.0.0.1:1/x", { insecure_ignore_host_key: "true" }, o);
      console.log(JSON.stringify([before, loaded()]));
    `;
    const out = execFileSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8" });
    const [before, after] = JSON.parse(out) as [number, number];
    expect(before).toBe(0);
    expect(after).toBeGreaterThan(0);
  });
});
