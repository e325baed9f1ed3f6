/**
 * The crash matrix (issue 16): every command that writes to a repository
 * (backup, repair index, repair snapshots, check recording damage, create, sync,
 * key add, key passwd, rm, prune) run with one store operation failed, and separately killed, at each
 * operation it makes in turn. After each: the repository opens; `check
 * --read-data` finds nothing but the damage the run started from; no
 * partial snapshot is visible and every listed snapshot restores equal to
 * its source (less the files damaged on purpose); and the next run
 * succeeds, a backup reusing what the broken one stored.
 *
 * - Failed: in process, the command's own code (src/cli, through
 *   buildProgram) on a fault-kit store (test/helpers/faults.ts): the
 *   operation fails with EIO or ENOSPC, or fails once the store has done it
 *   (a reply lost); for a backup on the fs store (staged packfiles) every
 *   write also fails, or has its bytes cut short, and no temporary file
 *   stays.
 * - Killed: the built CLI on the raw-store plugin (test/helpers/killable.ts),
 *   SIGKILLed once the operation is done. A backup is killed at every
 *   operation; the other commands at every write (their reads come before
 *   their writes or between them, so a kill there leaves the repository
 *   as the kill at the write before it did). Kills run two at a time, each
 *   on its own copy of the repository.
 *
 * Operations are addressed by kind and ordinal ("put packfile #3"): two
 * packfile uploads run at once, so the order of kinds varies between runs
 * while each kind's own sequence does not. The op number in a title is its
 * place in a reference run. The titles come from reference runs made while
 * the file is collected.
 */
import { promises as fsp } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { FsExporter } from "../../src/connectors/fs/exporter.js";
import { FsStore } from "../../src/connectors/fs/store.js";
import { type MemoryBacking, MemoryStore } from "../../src/connectors/memory/store.js";
import type { Store } from "../../src/connectors/store.js";
import { Resource, resourceName } from "../../src/connectors/flags.js";
import { BlobType } from "../../src/repository/codec.js";
import { decodeConfig, rewrapForKeys, unlock, withKeys } from "../../src/repository/config.js";
import { openConfig, storeConfig } from "../../src/repository/keys.js";
import { readLocks } from "../../src/repository/locks.js";
import { Repository } from "../../src/repository/repository.js";
import { blobKey } from "../../src/repository/state.js";
import { check, type CheckProblem } from "../../src/snapshot/check.js";
import { isPartial, type SnapshotHeader } from "../../src/snapshot/header.js";
import { restore } from "../../src/snapshot/restore/restore.js";
import { listSnapshots } from "../../src/snapshot/snapshots.js";
import { isCofferError } from "../../src/util/errors.js";
import { toHex } from "../../src/util/hex.js";
import { coffer, FAST_KDF } from "../helpers/cli.js";
import { cutShort, failing, faults, type Fault, OBJECT_OPS, type Op, recording } from "../helpers/faults.js";
import { type ProgramRun, runProgram, storeLocation } from "../helpers/program.js";
import { installKillable, readRawStore, readTrace, runKilled, writeRawStore } from "../helpers/killable.js";
import { compareTrees, writeSeededFile } from "../helpers/tree.js";

const KiB = 1024;
const PASS = "crash-matrix";
/** A backup of the fixture must make more than this many store operations. */
const MIN_BACKUP_OPS = 40;
const CHUNKING = { min: 1 * KiB, avg: 2 * KiB, max: 8 * KiB };
/** The smallest argon2id parameters: every cell opens its repository a dozen times. */
const KDF = { memory: 8, passes: 1, parallelism: 1 };
/** Packfiles of 4 KiB: the backup under test writes many (each a put and a state delta). */
const NARROW = { passphrase: PASS, packSize: 4 * KiB, chunking: CHUNKING, kdf: KDF };
/** Packfiles of 32 KiB for the repairs: fewer packfiles, fewer state deltas to delete, fewer kills to run. */
const WIDE = { ...NARROW, packSize: 32 * KiB };
/** Kills run at once (each a CLI and a plugin process). */
const KILLS_AT_ONCE = 2;

const base = await fsp.mkdtemp(path.join(tmpdir(), "coffer-crash-matrix-"));
afterAll(async () => {
  await fsp.rm(base, { recursive: true, force: true });
});
let seq = 0;
const fresh = (what: string) => path.join(base, `${what}-${++seq}`);

// ------------------------------------------------- the command, in process ---

type Outcome = ProgramRun;

/** Runs `coffer ARGV` in this process on the stores `store()` makes (one per open). */
async function cli(store: () => Store, argv: string[]): Promise<Outcome> {
  const loc = storeLocation(store);
  try {
    return await runProgram(argv, { at: loc.at, env: { COFFER_PASSPHRASE: PASS, HOME: base, XDG_CACHE_HOME: path.join(base, "cache") }, cwd: base });
  } finally {
    loc.release();
  }
}

function describeOutcome(o: Outcome): string {
  return `${o.error !== undefined ? `threw ${String(o.error)}` : `exit ${o.code}`}\nstdout: ${o.stdout}\nstderr: ${o.stderr}`;
}

async function cliOk(store: () => Store, argv: string[], code = 0): Promise<Outcome> {
  const o = await cli(store, argv);
  expect(o.code, `coffer ${argv.join(" ")}: ${describeOutcome(o)}`).toBe(code);
  return o;
}

// -------------------------------------------------------------- repositories ---

/** A repository's objects, for copies: a MemoryBacking. */
function clone(b: MemoryBacking): MemoryBacking {
  return {
    config: b.config && new Uint8Array(b.config),
    objects: new Map([...b.objects].map(([r, m]) => [r, new Map([...m].map(([k, v]) => [k, new Uint8Array(v)]))])),
  };
}

/** One copy of a repository, with plain stores on it. */
interface Copy {
  writable(): Store;
  readOnly(): Store;
}

const inMemory = (b: MemoryBacking): Copy => ({ writable: () => new MemoryStore({ backing: b }), readOnly: () => new MemoryStore({ backing: b, readOnly: true }) });
const onDisk = (dir: string): Copy => ({ writable: () => new FsStore(dir), readOnly: () => new FsStore(dir, { readOnly: true }) });

function open(store: Store): Promise<Repository> {
  return Repository.open(store, { passphrase: async () => PASS });
}

async function withRepo<T>(store: Store, fn: (repo: Repository) => Promise<T>): Promise<T> {
  const repo = await open(store);
  try {
    return await fn(repo);
  } finally {
    await repo.close();
  }
}

/** Blob keys of chunks and trees, with their raw sizes: in the index, and (`orphans`) in intact packfiles no state delta names. */
async function storedBlobs(repo: Repository, orphans: boolean): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const t of [BlobType.CHUNK, BlobType.TREE]) for (const [mac, loc] of repo.index.ofType(t)) out.set(blobKey(t, mac), loc.rawLength);
  if (orphans) {
    for (const p of (await repo.scanUnindexed()).verified) {
      for (const e of p.entries) if (e.type === BlobType.CHUNK || e.type === BlobType.TREE) out.set(blobKey(e.type, e.mac), e.rawLength);
    }
  }
  return out;
}

/** Locks this process holds: a failed run's process would be gone before the next run, its locks then stale. */
async function endProcess(c: Copy): Promise<void> {
  await withRepo(c.writable(), async (repo) => {
    for (const l of await readLocks(repo.store, repo.codec)) if (l.info?.pid === process.pid) await repo.store.delete(Resource.LOCK, l.name);
  });
}

// ------------------------------------------------------------------- fixture ---

/**
 * v1 and v2 of a small tree. v2 adds one file of new content (so its
 * chunks reach the packfiles in one order, and every run of the backup
 * makes the same packfiles) and changes the rest in metadata only: a mode,
 * an mtime, a file removed, a symlink and an empty directory added.
 */
async function makeTrees(): Promise<{ v1: string; v2: string }> {
  const v1 = path.join(base, "v1");
  await fsp.mkdir(path.join(v1, "dir", "sub"), { recursive: true });
  await fsp.mkdir(path.join(v1, "empty"));
  const files: [string, number][] = [["a.txt", 1000], ["b.bin", 6 * KiB], ["dir/c.bin", 10 * KiB], ["dir/sub/d.txt", 500], ["big.bin", 24 * KiB]];
  for (const [f, size] of files) await writeSeededFile(path.join(v1, f), `v1:${f}`, size);
  await fsp.symlink("a.txt", path.join(v1, "link"));
  await fsp.link(path.join(v1, "dir", "c.bin"), path.join(v1, "dir", "hard.bin"));
  const v2 = path.join(base, "v2");
  await fsp.cp(v1, v2, { recursive: true, preserveTimestamps: true, verbatimSymlinks: true });
  await fsp.rm(path.join(v2, "dir", "hard.bin"));
  await fsp.link(path.join(v2, "dir", "c.bin"), path.join(v2, "dir", "hard.bin"));
  await writeSeededFile(path.join(v2, "dir", "sub", "new.bin"), "v2:new", 56 * KiB);
  await fsp.chmod(path.join(v2, "a.txt"), 0o600);
  await fsp.utimes(path.join(v2, "big.bin"), new Date("2020-01-02T03:04:05Z"), new Date("2020-01-02T03:04:05Z"));
  await fsp.rm(path.join(v2, "b.bin"));
  await fsp.symlink("sub/new.bin", path.join(v2, "dir", "to-new"));
  await fsp.mkdir(path.join(v2, "dir", "empty2"));
  return { v1, v2 };
}

const { v1, v2 } = await makeTrees();

async function created(o: typeof NARROW): Promise<MemoryBacking> {
  const mem = new MemoryStore();
  await Repository.create(mem, o);
  return mem.backing;
}

/** The backup's starting point: v1 backed up into narrow packfiles. */
const backupStart = await created(NARROW);
await cliOk(() => inMemory(backupStart).writable(), ["backup", "--json", v1]);
const v1Id = await withRepo(inMemory(backupStart).readOnly(), async (r) => toHex(r.snapshotIds()[0]!));

/** A clean backup of v2 from there: the blobs it adds (key -> raw bytes) and how many bytes it reports. */
const backupRef = await (async () => {
  const end = clone(backupStart);
  const o = await cliOk(() => inMemory(end).writable(), ["backup", "--json", v2]);
  const [before, after] = await Promise.all([backupStart, end].map((b) => withRepo(inMemory(b).readOnly(), (r) => storedBlobs(r, false))));
  const added = new Map([...after!].filter(([k]) => !before!.has(k)));
  return { added, newBytes: (JSON.parse(o.stdout) as { newBytes: number }).newBytes };
})();

/**
 * The repairs' starting point: v1 and v2 in wide packfiles, with a byte
 * flipped in the largest packfile the v2 backup added (chunks of its new
 * file) and in one state delta of the v1 backup.
 */
const damage = await (async () => {
  const b = await created(WIDE);
  await cliOk(() => inMemory(b).writable(), ["backup", "--json", v1]);
  const packs1 = new Set(b.objects.get(Resource.PACKFILE)!.keys());
  const deltas1 = [...b.objects.get(Resource.STATE)!.keys()].sort();
  await cliOk(() => inMemory(b).writable(), ["backup", "--json", v2]);
  const [pack, bytes] = [...b.objects.get(Resource.PACKFILE)!].filter(([k]) => !packs1.has(k)).sort((x, y) => y[1].byteLength - x[1].byteLength)[0]!;
  bytes[bytes.byteLength >> 1]! ^= 1;
  const delta = deltas1[0]!;
  const d = b.objects.get(Resource.STATE)!.get(delta)!;
  d[d.byteLength >> 1]! ^= 1;
  const ids = await withRepo(inMemory(b).readOnly(), async (r) => (await listSnapshots(r)).snapshots.map((h) => toHex(h.id)));
  const problems = await withRepo(inMemory(b).readOnly(), async (r) => (await check(r)).problems);
  const paths = new Set(problems.flatMap((p) => (p.path !== undefined ? [p.path] : [])));
  return { backing: b, pack, delta, ids, problems, paths };
})();

/** Whether a check problem is the damage made on purpose, or follows from it. */
function fromDamage(p: CheckProblem): boolean {
  if (p.path !== undefined) return damage.paths.has(p.path) && p.snapshot !== damage.ids[0];
  return p.message.includes(damage.pack.slice(0, 12)) || p.message.includes(damage.delta.slice(0, 12));
}

/** The snapshots' starting point: the damaged repository after `repair index`. */
const indexRepaired = clone(damage.backing);
await cliOk(() => inMemory(indexRepaired).writable(), ["repair", "index", "--json"]);
/** What check finds after a clean `repair index`: the snapshot's lost data. */
const indexRepairedProblems = await withRepo(inMemory(indexRepaired).readOnly(), async (r) => (await check(r)).problems);

// --------------------------------------------------------------- the checks ---

/** The snapshots listed (every checkpoint included), none unreadable and none partial. */
async function snapshots(c: Copy, what: string): Promise<SnapshotHeader[]> {
  return withRepo(c.readOnly(), async (repo) => {
    const l = await listSnapshots(repo, undefined, { superseded: true });
    expect(l.unreadable, what).toEqual([]);
    expect(l.snapshots.filter(isPartial).map((h) => toHex(h.id)), `${what}: no partial snapshot`).toEqual([]);
    return l.snapshots;
  });
}

async function problems(c: Copy): Promise<CheckProblem[]> {
  return withRepo(c.readOnly(), async (repo) => (await check(repo)).problems);
}

/**
 * Root trees already restored and found equal to their source (less the
 * damaged files). Trees are named by their MACs, so a snapshot with the
 * same root tree has the same content, which the cell's own check shows is
 * all there and intact: it is not restored again.
 */
const restoredRoots = new Set<string>();

/** Restores `h` and compares it with its source (the importer's root), less the files damaged on purpose. */
async function expectRestores(c: Copy, h: SnapshotHeader, what: string, damaged: ReadonlySet<string> = new Set()): Promise<void> {
  const key = `${toHex(h.root.tree!)} ${h.importer.root} ${[...damaged].join(" ")}`;
  if (restoredRoots.has(key)) return;
  const to = fresh("restore");
  const exporter = new FsExporter(to);
  const r = await withRepo(c.readOnly(), async (repo) => {
    try {
      return await restore(repo, h, "/", exporter, { workers: 0 });
    } finally {
      await exporter.close();
    }
  });
  const w = `${what}: snapshot ${toHex(h.id).slice(0, 8)} of ${h.importer.root}`;
  expect(r.errors.map(([p]) => p).filter((p) => !damaged.has(p)), w).toEqual([]);
  expect(await compareTrees(h.importer.root, to, { rootMeta: false, ignore: (rel) => damaged.has(`/${rel}`) }), w).toEqual([]);
  await fsp.rm(to, { recursive: true, force: true });
  restoredRoots.add(key);
}

/** What a command under test must leave, after a fault and after the run that follows it. */
interface Spec {
  name: string;
  argv: string[];
  /** The exit code of a finished run. */
  code: number;
  start: MemoryBacking;
  /** After the broken run (`finished`: it said it had succeeded); what it returns goes to afterRetry. */
  afterFault(c: Copy, what: string, finished: boolean): Promise<unknown>;
  /** After the next run of the same command. */
  afterRetry(c: Copy, retry: Outcome, what: string, fromFault: unknown): Promise<void>;
  /** Store calls to fail at besides FAULT_KINDS' (in process only). */
  alsoFail?: readonly Op[];
  /** false: no kill cells (see the key specs). */
  killable?: boolean;
}

const backupSpec: Spec = {
  name: "backup",
  argv: ["backup", "--json", v2],
  code: 0,
  start: backupStart,
  async afterFault(c, what, finished) {
    expect(await problems(c), what).toEqual([]);
    const snaps = await snapshots(c, what);
    expect(snaps.map((h) => h.importer.root), what).toEqual(finished || snaps.length > 1 ? [v1, v2] : [v1]);
    expect(toHex(snaps[0]!.id)).toBe(v1Id);
    for (const h of snaps) await expectRestores(c, h, what);
    // What of the clean backup's blobs the broken one left stored (indexed, or in packfiles the next backup adopts).
    const stored = await withRepo(c.readOnly(), (repo) => storedBlobs(repo, true));
    let kept = 0;
    for (const [k, n] of backupRef.added) if (stored.has(k)) kept += n;
    return kept;
  },
  async afterRetry(c, retry, what, kept) {
    expect(retry.code, `${what}: the next backup\n${describeOutcome(retry)}`).toBe(0);
    const s = JSON.parse(retry.stdout) as { id: string; newBytes: number };
    // It stores only what the broken one had not: less than a first backup whenever something was stored.
    expect(s.newBytes, `${what}: bytes added by the next backup (${kept as number} of ${backupRef.newBytes} kept)`).toBeLessThanOrEqual(backupRef.newBytes - (kept as number));
    if ((kept as number) > 0) expect(s.newBytes, what).toBeLessThan(backupRef.newBytes);
    expect(await problems(c), what).toEqual([]);
    const h = (await snapshots(c, what)).find((x) => toHex(x.id) === s.id)!;
    await expectRestores(c, h, `${what}: the next backup`);
  },
};

/** The damaged repository as it was: both snapshots, restoring but for the damaged files, check finding only that damage. */
async function expectAsDamaged(c: Copy, what: string, ids: readonly string[] = damage.ids): Promise<void> {
  const found = await problems(c);
  expect(found.filter((p) => !fromDamage(p)), `${what}: problems beyond the damage made`).toEqual([]);
  const snaps = await snapshots(c, what);
  expect(snaps.map((h) => toHex(h.id)), what).toEqual(ids);
  for (const h of snaps) await expectRestores(c, h, what, damage.paths);
}

const repairIndexSpec: Spec = {
  name: "repair index",
  argv: ["repair", "index", "--json"],
  code: 0,
  start: damage.backing,
  async afterFault(c, what) {
    await expectAsDamaged(c, what);
  },
  async afterRetry(c, retry, what) {
    expect(retry.code, `${what}: the next repair\n${describeOutcome(retry)}`).toBe(0);
    // As after a clean repair: only the snapshot's lost data is left, which `repair snapshots` then repairs.
    expect(await problems(c), what).toEqual(indexRepairedProblems);
    await expectAsDamaged(c, what);
    await cliOk(() => c.writable(), ["repair", "snapshots"]);
    expect(await problems(c), `${what}: after repair snapshots`).toEqual([]);
  },
};

/** The snapshot `repair snapshots` writes in place of v2 (its `repairOf`), if it is there. */
const repairedV2 = (snaps: SnapshotHeader[]) => snaps.find((h) => h.repairOf !== undefined && toHex(h.repairOf.id) === damage.ids[1]);

const repairSnapshotsSpec: Spec = {
  name: "repair snapshots",
  argv: ["repair", "snapshots", "--json"],
  code: 0,
  start: indexRepaired,
  async afterFault(c, what, finished) {
    // v2 or the snapshot replacing it, never both or neither.
    const snaps = await snapshots(c, what);
    const r = repairedV2(snaps);
    if (finished) expect(r, `${what}: finished, so v2 is replaced`).toBeDefined();
    await expectAsDamaged(c, what, [damage.ids[0]!, r ? toHex(r.id) : damage.ids[1]!]);
  },
  async afterRetry(c, retry, what) {
    expect(retry.code, `${what}: the next repair\n${describeOutcome(retry)}`).toBe(0);
    expect(await problems(c), what).toEqual([]);
    const r = repairedV2(await snapshots(c, what));
    expect(r, what).toBeDefined();
    await expectAsDamaged(c, what, [damage.ids[0]!, toHex(r!.id)]);
  },
};

const checkSpec: Spec = {
  name: "check",
  argv: ["check", "--json"],
  code: 1,
  start: damage.backing,
  async afterFault(c, what) {
    await expectAsDamaged(c, what);
  },
  async afterRetry(c, retry, what) {
    expect(retry.code, `${what}: the next check\n${describeOutcome(retry)}`).toBe(1);
    await expectAsDamaged(c, what);
    // The damage is recorded (by the broken run or by this one): backups store those blobs again.
    await withRepo(c.readOnly(), async (repo) => expect(repo.index.damaged.has(damage.pack), what).toBe(true));
  },
};

const createSpec: Spec = {
  name: "create",
  argv: ["create", ...FAST_KDF],
  code: 0,
  start: MemoryStore.emptyBacking(),
  async afterFault(c, what) {
    // No repository, or one that works.
    const opened = await open(c.readOnly()).then(
      async (r) => (await r.close(), true),
      (e: unknown) => (expect(isCofferError(e, "NO_REPOSITORY"), `${what}: ${String(e)}`).toBe(true), false),
    );
    if (opened) expect(await problems(c), what).toEqual([]);
    return opened;
  },
  async afterRetry(c, retry, what, opened) {
    if (opened) expect(isCofferError(retry.error, "REPOSITORY_EXISTS"), `${what}: ${describeOutcome(retry)}`).toBe(true);
    else expect(retry.code, `${what}: ${describeOutcome(retry)}`).toBe(0);
    await cliOk(() => c.writable(), ["backup", "--json", v1]);
    const snaps = await snapshots(c, what);
    expect(snaps).toHaveLength(1);
    await expectRestores(c, snaps[0]!, what);
  },
};

/** The new passphrase of `key add` and `key passwd` (PASS is the one they are run with). */
const NEW_PASS = "crash-matrix-new";
const newPassFile = path.join(base, "new-passphrase");
await fsp.writeFile(newPassFile, `${NEW_PASS}\n`);

/**
 * The key commands' starting point: v1 backed up into a repository of its
 * own, its configuration already version 3 with PASS's key alone. Its own:
 * this client's record of a repository (docs/CLI.md, "Known repositories")
 * then refuses a version-2 copy of one it saw at version 3, and every cell
 * starts from a copy. keys.test.ts fails the upgrade from version 2.
 */
const keyStart = await (async () => {
  const b = await created(NARROW);
  await cliOk(() => inMemory(b).writable(), ["backup", "--json", v1]);
  const store = inMemory(b).writable();
  const opened = await openConfig(store, { passphrase: async () => PASS });
  await storeConfig(store, opened, withKeys(opened.config, [rewrapForKeys(opened.config, opened.unlocked)], opened.unlocked.master));
  return b;
})();
const keyV1Id = await withRepo(inMemory(keyStart).readOnly(), async (r) => toHex(r.snapshotIds()[0]!));

/** Which of PASS and NEW_PASS open the configuration of `c`, and how many keys it holds. */
async function keyState(c: Copy): Promise<{ old: boolean; new: boolean; keys: number }> {
  const store = c.readOnly();
  const config = decodeConfig(await store.open());
  await store.close();
  const opens = (p: string) =>
    unlock(config, p).then(
      () => true,
      (e: unknown) => (expect(isCofferError(e, "WRONG_PASSPHRASE"), String(e)).toBe(true), false),
    );
  return { old: await opens(PASS), new: await opens(NEW_PASS), keys: config.encryption!.keys.length };
}

/** The repository opened with `pass`: check finds nothing, and v1 is its one snapshot (the keys share one master key, so data is as before). */
async function expectIntactWith(c: Copy, pass: string, what: string): Promise<void> {
  const repo = await Repository.open(c.readOnly(), { passphrase: async () => pass });
  try {
    expect((await check(repo)).problems, what).toEqual([]);
    expect((await listSnapshots(repo)).snapshots.map((h) => toHex(h.id)), what).toEqual([keyV1Id]);
  } finally {
    await repo.close();
  }
}

/**
 * Kill cells: none for `key`. The killable store is a plugin (test/helpers/
 * killable.ts), and the plugin protocol cannot replace a configuration, so
 * `coffer key` refuses it (docs/WIRE.md). A replacement is one atomic store
 * call, whose atomicity against a dying writer is the store's (the Store
 * kit's replaceConfig checks; fs: a rename, ptar: its commit); what a kill
 * between passwd's two calls leaves is what a failure of the second leaves.
 * The store's open() is failed too: passwd reads the configuration back
 * between its two replacements.
 */
const keyAddSpec: Spec = {
  name: "key add",
  argv: ["key", "add", ...FAST_KDF, "--new-passphrase-file", newPassFile, "--json"],
  code: 0,
  start: keyStart,
  alsoFail: ["open"],
  killable: false,
  async afterFault(c, what, finished) {
    // The old key, and the new one only if the replacement was made.
    const k = await keyState(c);
    const stages = [{ old: true, new: false, keys: 1 }, { old: true, new: true, keys: 2 }];
    const stage = stages.findIndex((x) => x.old === k.old && x.new === k.new && x.keys === k.keys);
    expect(stage, `${what}: ${JSON.stringify(k)}`).toBeGreaterThanOrEqual(finished ? 1 : 0);
    await expectIntactWith(c, PASS, what);
    return stage;
  },
  async afterRetry(c, retry, what, stage) {
    expect(retry.code, `${what}: the next key add\n${describeOutcome(retry)}`).toBe(0);
    expect(await keyState(c), what).toEqual({ old: true, new: true, keys: (stage as number) + 2 });
    await expectIntactWith(c, NEW_PASS, what);
  },
};

const keyPasswdSpec: Spec = {
  name: "key passwd",
  argv: ["key", "passwd", ...FAST_KDF, "--new-passphrase-file", newPassFile, "--json"],
  code: 0,
  start: keyStart,
  alsoFail: ["open"],
  killable: false,
  async afterFault(c, what, finished) {
    // Before the first replacement, between the two (both keys), or after the second.
    const k = await keyState(c);
    const stages = [{ old: true, new: false, keys: 1 }, { old: true, new: true, keys: 2 }, { old: false, new: true, keys: 1 }];
    const stage = stages.findIndex((x) => x.old === k.old && x.new === k.new && x.keys === k.keys);
    expect(stage, `${what}: ${JSON.stringify(k)}`).toBeGreaterThanOrEqual(finished ? 2 : 0);
    await expectIntactWith(c, k.old ? PASS : NEW_PASS, what);
    return stage;
  },
  async afterRetry(c, retry, what, stage) {
    if (stage === 2) {
      // Done already: the old passphrase opens nothing, and the rerun (given it) says so.
      expect(isCofferError(retry.error, "WRONG_PASSPHRASE"), `${what}: ${describeOutcome(retry)}`).toBe(true);
      expect(await keyState(c), what).toEqual({ old: false, new: true, keys: 1 });
    } else {
      expect(retry.code, `${what}: the next key passwd\n${describeOutcome(retry)}`).toBe(0);
      // From between the two, the rerun adds its own new key and removes the old: two keys of NEW_PASS.
      expect(await keyState(c), what).toEqual({ old: false, new: true, keys: stage === 0 ? 1 : 2 });
    }
    await expectIntactWith(c, NEW_PASS, what);
  },
};

/**
 * Maintenance's starting point: v1 and v2 backed up, v1 removed and a first
 * `maintenance` run's marks, then v1 backed up again and v2 removed. The run
 * under test deletes what the first run marked, marks v2's data and
 * repacks and merges what is left partly used.
 */
const gcStart = await (async () => {
  const b = await created(WIDE);
  await cliOk(() => inMemory(b).writable(), ["backup", "--json", v1]);
  await cliOk(() => inMemory(b).writable(), ["backup", "--json", v2]);
  const [first, second] = await withRepo(inMemory(b).readOnly(), async (r) => (await listSnapshots(r)).snapshots.map((h) => toHex(h.id)));
  await cliOk(() => inMemory(b).writable(), ["rm", first!]);
  await cliOk(() => inMemory(b).writable(), ["maintenance", "--grace", "0", "--json"]);
  const again = JSON.parse((await cliOk(() => inMemory(b).writable(), ["backup", "--json", v1])).stdout) as { id: string };
  await cliOk(() => inMemory(b).writable(), ["rm", second!]);
  return { backing: b, kept: again.id };
})();

/** Maintenance runs until a dry run finds nothing to do (at most `runs`); the packfile bytes stored then. */
async function collected(c: Copy, what: string, runs = 3): Promise<number> {
  for (let i = 0; ; i++) {
    const dry = JSON.parse((await cliOk(() => c.writable(), ["maintenance", "--grace", "0", "--dry-run", "--json"])).stdout) as Record<string, { packs: number }>;
    if (dry.freed!.packs + dry.marked!.packs + dry.keptForLocks!.packs === 0) break;
    expect(i, `${what}: maintenance still has work after ${runs} runs: ${JSON.stringify(dry)}`).toBeLessThan(runs);
    await cliOk(() => c.writable(), ["maintenance", "--grace", "0", "--json"]);
  }
  return withRepo(c.readOnly(), async (repo) => {
    const r = await check(repo, { fast: true });
    expect(r.unreferencedPacks, `${what}: packfiles no delta names are left`).toBe(0);
    let bytes = 0;
    for await (const m of repo.store.list(Resource.PACKFILE)) bytes += (await repo.store.get(Resource.PACKFILE, m)).byteLength;
    return bytes;
  });
}

/** The packfile bytes a clean run and the runs after it leave. */
const gcCleanBytes = await (async () => {
  const c = inMemory(clone(gcStart.backing));
  await cliOk(() => c.writable(), ["maintenance", "--grace", "0", "--json"]);
  return collected(c, "clean maintenance");
})();

async function expectKept(c: Copy, what: string): Promise<void> {
  expect(await problems(c), what).toEqual([]);
  const snaps = await snapshots(c, what);
  expect(snaps.map((h) => toHex(h.id)), what).toEqual([gcStart.kept]);
  await expectRestores(c, snaps[0]!, what);
}

const maintenanceSpec: Spec = {
  name: "maintenance",
  argv: ["maintenance", "--grace", "0", "--json"],
  code: 0,
  start: gcStart.backing,
  async afterFault(c, what) {
    await expectKept(c, what);
  },
  async afterRetry(c, retry, what) {
    expect(retry.code, `${what}: the next maintenance\n${describeOutcome(retry)}`).toBe(0);
    await expectKept(c, what);
    // Later runs finish: nothing left to free, and no more stored than after a clean run (give or take a merge).
    const bytes = await collected(c, what);
    expect(bytes, `${what}: packfile bytes left (a clean run leaves ${gcCleanBytes})`).toBeLessThanOrEqual(gcCleanBytes * 1.1);
    await expectKept(c, `${what}: collected`);
  },
};

/**
 * sync's starting point: a destination holding a direct backup of v1, and
 * a source on disk (another passphrase, MAC and chunking) holding v1 and
 * v2, taken after it. A sync copies both, v1's content deduplicated
 * against the direct backup.
 */
const syncStart = await created(WIDE);
await cliOk(() => inMemory(syncStart).writable(), ["backup", "--json", v1]);
const syncPassFile = path.join(base, "sync-source-passphrase");
await fsp.writeFile(syncPassFile, "crash-matrix sync source\n");
const syncSource = fresh("sync-source");
await (async () => {
  const fs = new FsStore(syncSource);
  await Repository.create(fs, { passphrase: "crash-matrix sync source", mac: "hmac-sha256", chunking: { min: 2 * KiB, avg: 4 * KiB, max: 16 * KiB }, packSize: 32 * KiB, kdf: KDF });
  await fs.close();
  for (const tree of [v1, v2]) {
    const r = await coffer(["--keyfile", syncPassFile, "at", syncSource, "backup", "-q", tree], { env: { HOME: base }, cwd: base });
    if (r.exitCode !== 0) throw new Error(`backup of ${tree} into the sync source: exit ${r.exitCode}\n${r.stderr}`);
  }
})();
const syncArgv = ["sync", "--json", "--other-passphrase-file", syncPassFile, "from", syncSource];
const syncStartId = await withRepo(inMemory(syncStart).readOnly(), async (r) => toHex(r.snapshotIds()[0]!));

/** A clean sync from there: the blobs it adds and how many bytes it reports. */
const syncRef = await (async () => {
  const end = clone(syncStart);
  const o = await cliOk(() => inMemory(end).writable(), syncArgv);
  const [before, after] = await Promise.all([syncStart, end].map((b) => withRepo(inMemory(b).readOnly(), (r) => storedBlobs(r, false))));
  const added = new Map([...after!].filter(([k]) => !before!.has(k)));
  return { added, newBytes: (JSON.parse(o.stdout) as { newBytes: number }).newBytes };
})();

const syncSpec: Spec = {
  name: "sync",
  argv: syncArgv,
  code: 0,
  start: syncStart,
  async afterFault(c, what, finished) {
    expect(await problems(c), what).toEqual([]);
    const snaps = await snapshots(c, what);
    expect(toHex(snaps[0]!.id), what).toBe(syncStartId);
    // Copies of v1, then of v2: each complete or absent, never a partial one.
    const copies = snaps.slice(1);
    expect(copies.every((h) => h.syncOf !== undefined), what).toBe(true);
    expect(copies.map((h) => h.importer.root), what).toEqual(finished ? [v1, v2] : [v1, v2].slice(0, copies.length));
    for (const h of snaps) await expectRestores(c, h, what);
    const stored = await withRepo(c.readOnly(), (repo) => storedBlobs(repo, true));
    let kept = 0;
    for (const [k, n] of syncRef.added) if (stored.has(k)) kept += n;
    return kept;
  },
  async afterRetry(c, retry, what, kept) {
    expect(retry.code, `${what}: the next sync\n${describeOutcome(retry)}`).toBe(0);
    const s = JSON.parse(retry.stdout) as { copied: number; skipped: number; newBytes: number };
    expect(s.copied + s.skipped, what).toBe(2);
    // It stores only what the broken one had not.
    expect(s.newBytes, `${what}: bytes added by the next sync (${kept as number} of ${syncRef.newBytes} kept)`).toBeLessThanOrEqual(syncRef.newBytes - (kept as number));
    if ((kept as number) > 0) expect(s.newBytes, what).toBeLessThan(syncRef.newBytes);
    expect(await problems(c), what).toEqual([]);
    const snaps = await snapshots(c, what);
    expect(snaps.map((h) => h.importer.root), what).toEqual([v1, v1, v2]);
    expect(new Set(snaps.slice(1).map((h) => toHex(h.syncOf!.id))).size, what).toBe(2);
    for (const h of snaps) await expectRestores(c, h, `${what}: after the next sync`);
  },
};


/** rm's starting point: v1 backed up as of 2020-01-01, v2 as of 2020-06-01 (wide packfiles). */
const rmStart = await created(WIDE);
await cliOk(() => inMemory(rmStart).writable(), ["backup", "--json", "--time", "2020-01-01T00:00:00Z", v1]);
await cliOk(() => inMemory(rmStart).writable(), ["backup", "--json", "--time", "2020-06-01T00:00:00Z", v2]);

const rmSpec: Spec = {
  name: "rm",
  argv: ["rm", "--json", "--before", "2020-03-01T00:00:00Z"],
  code: 0,
  start: rmStart,
  async afterFault(c, what, finished) {
    // v1 removed or not, v2 kept, both intact.
    expect(await problems(c), what).toEqual([]);
    const snaps = await snapshots(c, what);
    expect(snaps.map((h) => h.importer.root), what).toEqual(finished ? [v2] : snaps.length === 1 ? [v2] : [v1, v2]);
    for (const h of snaps) await expectRestores(c, h, what);
  },
  async afterRetry(c, retry, what) {
    expect(retry.code, `${what}: the next rm\n${describeOutcome(retry)}`).toBe(0);
    expect(await problems(c), what).toEqual([]);
    const snaps = await snapshots(c, what);
    expect(snaps.map((h) => h.importer.root), what).toEqual([v2]);
    await expectRestores(c, snaps[0]!, what);
  },
};

/** prune's starting point: three snapshots (v1, v2, v1 again) in wide packfiles, so that keeping the last of each source removes the first. */
const pruneStart = await (async () => {
  const b = await created(WIDE);
  for (const tree of [v1, v2, v1]) await cliOk(() => inMemory(b).writable(), ["backup", "--json", tree]);
  const ids = await withRepo(inMemory(b).readOnly(), async (r) => (await listSnapshots(r)).snapshots.map((h) => toHex(h.id)));
  return { backing: b, ids, kept: ids.slice(1) };
})();

/** prune keeping the newest of each source: its removal is one state delta, so the first snapshot is there or not, the others always. */
const pruneSpec: Spec = {
  name: "prune",
  argv: ["prune", "--keep-last", "1", "--tz", "UTC", "--json"],
  code: 0,
  start: pruneStart.backing,
  async afterFault(c, what, finished) {
    expect(await problems(c), what).toEqual([]);
    const snaps = await snapshots(c, what);
    const ids = snaps.map((h) => toHex(h.id));
    if (finished) expect(ids, `${what}: finished, so pruned`).toEqual(pruneStart.kept);
    else expect([pruneStart.ids, pruneStart.kept], what).toContainEqual(ids);
    for (const h of snaps) await expectRestores(c, h, what);
  },
  async afterRetry(c, retry, what) {
    expect(retry.code, `${what}: the next prune\n${describeOutcome(retry)}`).toBe(0);
    const plan = JSON.parse(retry.stdout) as { entries: { id: string; action: string }[] };
    expect(plan.entries.filter((e) => e.action === "keep").map((e) => e.id).sort(), what).toEqual([...pruneStart.kept].sort());
    expect(await problems(c), what).toEqual([]);
    const snaps = await snapshots(c, what);
    expect(snaps.map((h) => toHex(h.id)), what).toEqual(pruneStart.kept);
    for (const h of snaps) await expectRestores(c, h, `${what}: after the next prune`);
  },
};

const SPECS = [backupSpec, repairIndexSpec, repairSnapshotsSpec, checkSpec, createSpec, maintenanceSpec, syncSpec, keyAddSpec, keyPasswdSpec, rmSpec, pruneSpec];

// --------------------------------------------------------------------- cells ---

/** One operation of a reference run, addressed by kind and ordinal. */
interface Point {
  /** Its place in the reference run (1, 2, ...). */
  n: number;
  op: Op;
  /** The resource's name; "" for create. */
  resource: string;
  /** It is the kth operation of its kind. */
  k: number;
}

function points(ops: { op: string; resource: string }[]): Point[] {
  const seen = new Map<string, number>();
  return ops.map((o, i) => {
    const kind = `${o.op} ${o.resource}`;
    const k = (seen.get(kind) ?? 0) + 1;
    seen.set(kind, k);
    return { n: i + 1, op: o.op as Op, resource: o.resource, k };
  });
}

const label = (p: Point) => `op ${p.n} (${p.op}${p.resource ? ` ${p.resource}` : ""} #${p.k})`;
const WRITE_OPS: readonly Op[] = ["create", "put", "delete", "stage", "write", "commit", "replaceConfig"];
const isWrite = (p: Point) => WRITE_OPS.includes(p.op);
const RESOURCE_OF: Record<string, Resource> = Object.fromEntries(Object.values(Resource).map((r) => [resourceName(r), r]));
/** The fault-kit selector of `p`'s kind. */
const selector = (p: Point) => ({ op: p.op, ...(p.resource ? { resource: RESOURCE_OF[p.resource]! } : {}) });

/** The operations a run of `spec` makes on `c`, as the fault kit sees them (those of `kinds`). */
async function recorded(spec: Spec, c: Copy, kinds: readonly Op[]): Promise<Point[]> {
  const rec = recording(c.writable());
  await cliOk(() => rec, spec.argv, spec.code);
  return points(rec.entries({ op: kinds }).map((e) => ({ op: e.op, resource: e.resource === undefined ? "" : resourceName(e.resource) })));
}

const FAULT_KINDS: readonly Op[] = [...OBJECT_OPS, "create", "replaceConfig"];
const inProcess = new Map(await Promise.all(SPECS.map(async (s) => [s.name, await recorded(s, inMemory(clone(s.start)), [...FAULT_KINDS, ...(s.alsoFail ?? [])])] as const)));

/** The backup's starting point on an fs store (packfiles staged). */
async function onDiskCopy(b: MemoryBacking): Promise<string> {
  const dir = fresh("fs-repo");
  const fs = new FsStore(dir);
  await fs.create(b.config!);
  for (const [r, objects] of b.objects) for (const [hex, bytes] of objects) await fs.put(r, Buffer.from(hex, "hex"), bytes);
  await fs.close();
  return dir;
}
const backupStartOnDisk = await onDiskCopy(backupStart);
async function diskCopy(): Promise<string> {
  const to = fresh("fs-copy");
  await fsp.cp(backupStartOnDisk, to, { recursive: true });
  return to;
}
const onDiskOps = await recorded(backupSpec, onDisk(await diskCopy()), ["put", "delete", "stage", "write", "commit"]);

/** Kill mode: the killable plugin, and the operations the built CLI makes through it (its trace). */
const killEnv = await installKillable(path.join(base, "home"), PASS);
async function rawCopy(b: MemoryBacking): Promise<string> {
  const dir = fresh("raw-repo");
  await writeRawStore(b, dir);
  return dir;
}
const traced = new Map(
  await Promise.all(
    SPECS.filter((s) => s.killable !== false).map(async (s) => {
      const dir = await rawCopy(s.start);
      const r = await coffer(["--store-opt", `trace=${dir}.trace`, "at", `killable:${dir}`, ...s.argv], { env: killEnv, cwd: base });
      if (r.exitCode !== s.code) throw new Error(`reference run of ${s.name} through the plugin: exit ${r.exitCode}\n${r.stderr}`);
      return [s.name, points(await readTrace(`${dir}.trace`))] as const;
    }),
  ),
);

/** A running count of kills, so that at most KILLS_AT_ONCE run. */
let killsRunning = 0;
const killWaiters: (() => void)[] = [];
async function killSlot<T>(fn: () => Promise<T>): Promise<T> {
  while (killsRunning >= KILLS_AT_ONCE) await new Promise<void>((r) => killWaiters.push(r));
  killsRunning++;
  try {
    return await fn();
  } finally {
    killsRunning--;
    killWaiters.shift()?.();
  }
}

/** Runs the broken command on `faulty` (a decorated store on `c`; `fired()` counts its faults), then checks what it left and the next run. */
async function failCell(spec: Spec, c: Copy, faulty: Store, fired: () => number, what: string): Promise<void> {
  const run = await cli(() => faulty, spec.argv);
  expect(fired(), `${what}: the fault fired once`).toBe(1);
  const finished = run.error === undefined && run.code === spec.code;
  if (!finished) expect(isCofferError(run.error) ? run.error.code : `exit ${run.code}`, `${what}: ${describeOutcome(run)}`).toMatch(/^(IO|REPOSITORY_WRITE)$/);
  await endProcess(c).catch((e: unknown) => {
    // A create that failed made none; a key passwd that got through replaced PASS (and `key` takes no lock).
    if (!isCofferError(e, "NO_REPOSITORY") && !isCofferError(e, "WRONG_PASSPHRASE")) throw e;
  });
  const left = await spec.afterFault(c, what, finished);
  await spec.afterRetry(c, await cli(() => c.writable(), spec.argv), what, left);
}

const errorOf = (p: Point): Fault => (p.n % 2 ? faults.io : faults.noSpace);

for (const spec of SPECS) {
  describe(`crash matrix: ${spec.name}`, () => {
    const ops = inProcess.get(spec.name)!;
    const killAt = (traced.get(spec.name) ?? []).filter((p) => spec === backupSpec || isWrite(p));

    if (spec === backupSpec) {
      it(`a backup of the fixture makes more than ${MIN_BACKUP_OPS} store operations, in process and through the plugin`, () => {
        expect(ops.length).toBeGreaterThan(MIN_BACKUP_OPS);
        expect(killAt.length).toBeGreaterThan(MIN_BACKUP_OPS);
        expect(ops.map((p) => p.op)).toContain("put");
        // The bytes a backup reports adding are those of the chunks and trees it adds: what the reuse checks count.
        expect([...backupRef.added.values()].reduce((a, b) => a + b, 0)).toBe(backupRef.newBytes);
      });
    }

    if (spec === repairIndexSpec) {
      it("the damaged repository: one file of v2 lost, a state delta unusable, v1 intact", () => {
        expect([...damage.paths]).toEqual(["/dir/sub/new.bin"]);
        expect(new Set(damage.problems.flatMap((p) => (p.snapshot !== undefined ? [p.snapshot] : [])))).toEqual(new Set([damage.ids[1]]));
        expect(damage.problems.some((p) => p.message.includes(damage.delta))).toBe(true);
        expect(damage.problems.every(fromDamage)).toBe(true);
      });
    }

    for (const p of ops) {
      it(`fail at ${label(p)}`, async () => {
        const c = inMemory(clone(spec.start));
        const f = failing(c.writable(), { ...selector(p), nth: p.k, error: errorOf(p) });
        await failCell(spec, c, f, () => f.failed.length, `fail at ${label(p)}`);
      });
    }

    for (const p of ops.filter(isWrite)) {
      it(`fail after ${label(p)} is done`, async () => {
        const c = inMemory(clone(spec.start));
        const f = failing(c.writable(), { ...selector(p), nth: p.k, error: errorOf(p), after: true });
        await failCell(spec, c, f, () => f.failed.length, `fail after ${label(p)}`);
      });
    }

    if (spec === backupSpec) {
      for (const p of onDiskOps) {
        it(`fs store: fail at ${label(p)}`, async () => {
          const dir = await diskCopy();
          const c = onDisk(dir);
          const f = failing(c.writable(), { ...selector(p), nth: p.k, error: errorOf(p) });
          await failCell(spec, c, f, () => f.failed.length, `fs store: fail at ${label(p)}`);
          expect(await fsp.readdir(path.join(dir, "tmp")), "no temporary file left").toEqual([]);
        });
      }
      for (const p of onDiskOps.filter((x) => x.op === "put" || x.op === "stage")) {
        it(`fs store: cut short ${label(p)}`, async () => {
          const dir = await diskCopy();
          const c = onDisk(dir);
          const f = cutShort(c.writable(), { ...selector(p), nth: p.k });
          await failCell(spec, c, f, () => f.cut.length, `fs store: cut short ${label(p)}`);
          expect(await fsp.readdir(path.join(dir, "tmp")), "no temporary file left").toEqual([]);
        });
      }
    }

    for (const p of killAt) {
      it.concurrent(`kill at ${label(p)}`, async () => {
        const what = `kill at ${label(p)}`;
        const dir = await rawCopy(spec.start);
        await killSlot(() => runKilled(killEnv, dir, `${p.op}:${p.resource ? RESOURCE_OF[p.resource] : 0}:${p.k}`, spec.argv, base));
        const c = inMemory(await readRawStore(dir));
        const left = await spec.afterFault(c, what, false);
        await spec.afterRetry(c, await cli(() => c.writable(), spec.argv), what, left);
      });
    }
  });
}
