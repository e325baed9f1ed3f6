/**
 * End-to-end tests of repository locking with real processes (run
 * `npm run build` first): a fixture process (test/fixtures/hold-lock.mjs,
 * using the built library) holds a lock while the BUILT CLI runs against the
 * same repository.
 *
 * - an exclusive lock held by a live process blocks `backup` (exit 11, the
 *   holder named); once it is released the same backup succeeds;
 * - an exclusive lock left by a SIGKILLed process on this host is stale and
 *   does not block `backup` (and the next exclusive locker removes it);
 * - a shared lock does not block `backup` (backups share), but does block
 *   an exclusive locker;
 * - read-only commands (`ls`, `restore`) take no lock and work while an
 *   exclusive lock is held;
 * - `prune` holds a shared lock: it runs beside a backup's, not beside an
 *   exclusive one.
 */
import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process";
import { existsSync, promises as fsp } from "node:fs";
import { hostname, tmpdir } from "node:os";
import * as path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  baseEnv,
  builtCliExists,
  type CofferResult,
  describeRun,
  type Env,
  EXIT,
  expectExit,
  expectNoStackTrace,
  FAST_KDF,
  parseJson,
  PROJECT_ROOT,
} from "../helpers/cli.js";
import { cofferInProcess } from "../helpers/in-process.js";

const PASS = "locks test passphrase";
const HOLD_LOCK = path.join(PROJECT_ROOT, "test", "fixtures", "hold-lock.mjs");
const READY_TIMEOUT_MS = 60_000; // a bound for a hung holder: a loaded machine may take seconds to start one
const CLI_TIMEOUT_MS = 20_000;

let base = "";
let home = "";
let src = "";
let counter = 0;

function fresh(name: string): string {
  return path.join(base, `${String(++counter).padStart(3, "0")}-${name}`);
}

function env(extra: Env = {}): Env {
  return { HOME: home, TMPDIR: path.join(base, "tmp"), COFFER_PASSPHRASE: PASS, ...extra };
}

async function run(args: string[]): Promise<CofferResult> {
  const r = await cofferInProcess(args, { env: env(), cwd: base, timeoutMs: CLI_TIMEOUT_MS });
  expectNoStackTrace(r);
  return r;
}

async function ok(args: string[]): Promise<CofferResult> {
  return expectExit(await run(args), EXIT.OK);
}

async function createRepo(): Promise<string> {
  const repo = fresh("repo");
  await ok(["at", repo, "create", ...FAST_KDF]);
  expect(existsSync(path.join(repo, "CONFIG"))).toBe(true);
  return repo;
}

async function backupJson(repo: string): Promise<{ id: string; files: number }> {
  const r = await ok(["at", repo, "backup", "--json", src]);
  const j = parseJson<{ id: string; files: number }>(r);
  expect(j.id, describeRun(r)).toMatch(/^[0-9a-f]{64}$/);
  expect(j.files, describeRun(r)).toBe(2);
  return j;
}

/** Names of the lock objects in an fs repository. */
async function lockFiles(repo: string): Promise<string[]> {
  return (await fsp.readdir(path.join(repo, "locks"))).sort();
}

// ---- the lock-holder process ----

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

interface Holder {
  child: ChildProcessWithoutNullStreams;
  pid: number;
  exited: Promise<Exit>;
  stdout: () => string;
  stderr: () => string;
}

const holders = new Set<Holder>();

/** Starts hold-lock.mjs; resolves once it has the lock (or rejects, describing what it printed). */
async function startHolder(repo: string, kind: "shared" | "exclusive"): Promise<Holder> {
  const child = spawn(process.execPath, [HOLD_LOCK, repo, kind], {
    cwd: base,
    env: { ...baseEnv(), HOME: home, COFFER_PASSPHRASE: PASS } as NodeJS.ProcessEnv,
    stdio: ["pipe", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  child.stdout.setEncoding("utf8").on("data", (d: string) => (out += d));
  child.stderr.setEncoding("utf8").on("data", (d: string) => (err += d));
  child.stdin.on("error", () => {});
  const exited = new Promise<Exit>((resolve) => child.on("close", (code, signal) => resolve({ code, signal })));
  const h: Holder = { child, pid: child.pid ?? -1, exited, stdout: () => out, stderr: () => err };
  holders.add(h);
  void exited.then(() => holders.delete(h));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`hold-lock ${kind}: no "locked" after ${READY_TIMEOUT_MS} ms\nstdout: ${out}\nstderr: ${err}`)), READY_TIMEOUT_MS);
    const onData = () => {
      if (/^locked \d+$/m.test(out)) {
        clearTimeout(timer);
        child.stdout.off("data", onData);
        resolve();
      }
    };
    child.stdout.on("data", onData);
    void exited.then((e) => {
      clearTimeout(timer);
      reject(new Error(`hold-lock ${kind} exited (${e.code ?? e.signal}) before locking\nstdout: ${out}\nstderr: ${err}`));
    });
  });
  expect(h.stdout()).toBe(`locked ${h.pid}\n`);
  return h;
}

/** Closes the holder's stdin (its signal to release) and waits for it to exit. */
async function releaseHolder(h: Holder): Promise<void> {
  h.child.stdin.end();
  const e = await h.exited;
  expect(e, `hold-lock exit\nstdout: ${h.stdout()}\nstderr: ${h.stderr()}`).toEqual({ code: 0, signal: null });
  expect(h.stdout()).toMatch(/released\n$/);
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

beforeAll(async () => {
  if (!builtCliExists()) throw new Error("the CLI is not built: run `npm run build` first");
  base = await fsp.mkdtemp(path.join(tmpdir(), "coffer-locks-"));
  home = path.join(base, "home");
  src = path.join(base, "src");
  await fsp.mkdir(home);
  await fsp.mkdir(path.join(base, "tmp"));
  await fsp.mkdir(path.join(src, "sub"), { recursive: true });
  await fsp.writeFile(path.join(src, "a.txt"), "hello locks\n");
  await fsp.writeFile(path.join(src, "sub", "b.bin"), Buffer.alloc(100_000, 7));
});

afterEach(async () => {
  // No holder may outlive its test.
  const left = [...holders];
  for (const h of left) h.child.kill("SIGKILL");
  await Promise.all(left.map((h) => h.exited));
});

afterAll(async () => {
  if (base) await fsp.rm(base, { recursive: true, force: true });
});

describe("repository locks (real processes)", () => {
  it("an exclusive lock held by a live process blocks backup (exit 11, holder named); after release the backup succeeds", async () => {
    const repo = await createRepo();
    const holder = await startHolder(repo, "exclusive");
    const held = await lockFiles(repo);
    expect(held).toHaveLength(1);

    const blocked = await run(["at", repo, "backup", "--json", src]);
    expectExit(blocked, EXIT.LOCKED);
    const where = describeRun(blocked);
    expect(blocked.stdout, where).toBe("");
    expect(blocked.stderr, where).toMatch(/locked/);
    expect(blocked.stderr, where).toContain(`pid ${holder.pid} on ${hostname()}`);
    expect(blocked.stderr, where).toContain("exclusive lock held by hold-lock");
    // The refused backup left nothing behind, and the holder is unaffected.
    expect(await lockFiles(repo)).toEqual(held);
    expect(pidAlive(holder.pid)).toBe(true);

    await releaseHolder(holder);
    expect(await lockFiles(repo)).toEqual([]);

    const j = await backupJson(repo);
    expect(await lockFiles(repo), "backup releases its own lock").toEqual([]);
    const ls = parseJson<{ id: string }[]>(await ok(["at", repo, "ls", "--json"]));
    expect(ls.map((s) => s.id)).toEqual([j.id]);
  });

  it("an exclusive lock left by a SIGKILLed process on this host is stale: backup proceeds", async () => {
    const repo = await createRepo();
    const holder = await startHolder(repo, "exclusive");
    const stale = await lockFiles(repo);
    expect(stale).toHaveLength(1);

    holder.child.kill("SIGKILL");
    expect(await holder.exited).toEqual({ code: null, signal: "SIGKILL" });
    expect(pidAlive(holder.pid), `pid ${holder.pid} is gone`).toBe(false);
    expect(await lockFiles(repo), "a killed holder cannot release its lock").toEqual(stale);

    await backupJson(repo);
    // backup (a shared locker) ignores the stale lock and leaves none of its own.
    expect(await lockFiles(repo)).toEqual(stale);

    // The next exclusive locker removes the stale lock.
    const next = await startHolder(repo, "exclusive");
    const now = await lockFiles(repo);
    expect(now).toHaveLength(1);
    expect(now).not.toEqual(stale);
    await releaseHolder(next);
    expect(await lockFiles(repo)).toEqual([]);
  });

  it("a shared lock held by a live process does not block backup, but blocks an exclusive locker", async () => {
    const repo = await createRepo();
    const holder = await startHolder(repo, "shared");
    const held = await lockFiles(repo);
    expect(held).toHaveLength(1);

    await backupJson(repo);
    expect(pidAlive(holder.pid)).toBe(true);
    expect(await lockFiles(repo), "the holder's lock is untouched, backup's own is gone").toEqual(held);

    // An exclusive locker is refused while the shared lock is live.
    await expect(startHolder(repo, "exclusive")).rejects.toThrow(new RegExp(`exited \\(11\\)[\\s\\S]*error LOCKED repository is locked: shared lock held by hold-lock \\(pid ${holder.pid} on `));
    expect(await lockFiles(repo)).toEqual(held);

    await releaseHolder(holder);
    expect(await lockFiles(repo)).toEqual([]);
  });

  it("read-only commands (ls, restore) work while an exclusive lock is held", async () => {
    const repo = await createRepo();
    const snap = await backupJson(repo);
    const holder = await startHolder(repo, "exclusive");
    const held = await lockFiles(repo);

    const ls = parseJson<{ id: string }[]>(await ok(["at", repo, "ls", "--json"]));
    expect(ls.map((s) => s.id)).toEqual([snap.id]);
    const lsDir = await ok(["at", repo, "ls", `${snap.id.slice(0, 8)}:/`]);
    expect(lsDir.stdout, describeRun(lsDir)).toMatch(/a\.txt/);

    const to = fresh("restore");
    await ok(["at", repo, "restore", "--to", to, snap.id.slice(0, 8)]);
    expect(await fsp.readFile(path.join(to, "a.txt"), "utf8")).toBe("hello locks\n");
    expect((await fsp.readFile(path.join(to, "sub", "b.bin"))).equals(Buffer.alloc(100_000, 7))).toBe(true);

    // Reads took no lock and did not disturb the holder's; a write is still refused.
    expect(await lockFiles(repo)).toEqual(held);
    expectExit(await run(["at", repo, "backup", "--json", src]), EXIT.LOCKED);
    await releaseHolder(holder);
  });

  it("prune runs beside a backup's shared lock, and is refused by an exclusive one", async () => {
    const repo = await createRepo();
    const first = await backupJson(repo);
    const second = await backupJson(repo);
    const shared = await startHolder(repo, "shared");
    const held = await lockFiles(repo);
    const pruned = parseJson<{ remove: number }>(await ok(["at", repo, "prune", "--json", "--keep-last", "1", "--tz", "UTC"]));
    expect(pruned.remove).toBe(1);
    expect(await lockFiles(repo), "the holder's lock is untouched, prune's own is gone").toEqual(held);
    await releaseHolder(shared);
    expect(parseJson<{ id: string }[]>(await ok(["at", repo, "ls", "--json"])).map((s) => s.id)).toEqual([second.id]);

    await ok(["at", repo, "undelete", first.id.slice(0, 12)]);
    const exclusive = await startHolder(repo, "exclusive");
    expectExit(await run(["at", repo, "prune", "--keep-last", "1", "--tz", "UTC"]), EXIT.LOCKED);
    await releaseHolder(exclusive);
    expect(parseJson<{ id: string }[]>(await ok(["at", repo, "ls", "--json"]))).toHaveLength(2);
  });
});
