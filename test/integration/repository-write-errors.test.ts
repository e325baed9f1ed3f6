/**
 * A write to the repository that fails (issue 15): a fault-injecting store
 * (a memory store whose packfile and state puts fail with ENOSPC, EDQUOT,
 * EROFS or EIO once a budget is spent) under a real backup of a directory
 * with the fs importer. The backup stops with one REPOSITORY_WRITE error
 * naming the repository, never as a read error of the entries after it; the
 * repository is still consistent (check finds nothing) and, the fault gone,
 * the next backup works. test/e2e/traps.test.ts does the same on a real
 * full file system.
 */
import { promises as fsp } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Resource } from "../../src/connectors/flags.js";
import { FsImporter } from "../../src/connectors/fs/importer.js";
import { MemoryStore } from "../../src/connectors/memory/store.js";
import type { CallOptions, Mac } from "../../src/connectors/store.js";
import { exitCodeOf } from "../../src/cli/exit-codes.js";
import { Repository } from "../../src/repository/repository.js";
import { backup } from "../../src/snapshot/backup/backup.js";
import type { BackupEvent } from "../../src/snapshot/backup/events.js";
import { check } from "../../src/snapshot/check.js";
import { CofferError, repositoryWriteError } from "../../src/util/errors.js";
import { prng } from "../helpers/prng.js";

const KDF = { memory: 8192, passes: 1, parallelism: 1 };
const FILES = 40;
const FILE_SIZE = 64 * 1024;

/** A memory store whose packfile and state writes fail with `errno` once `budget` bytes of them are stored. */
class FullStore extends MemoryStore {
  errno: string | null = null;
  budget = 0;
  failures = 0;

  override async put(resource: Resource, mac: Mac, data: Uint8Array | AsyncIterable<Uint8Array>, opts?: CallOptions): Promise<number> {
    if (this.errno !== null && resource !== Resource.LOCK) {
      const parts: Uint8Array[] = [];
      if (data instanceof Uint8Array) parts.push(data);
      else for await (const p of data) parts.push(p);
      const size = parts.reduce((n, p) => n + p.byteLength, 0);
      if (size > this.budget) {
        this.failures++;
        const e = Object.assign(new Error(`${this.errno}: injected failure, write`), { code: this.errno });
        throw new CofferError("IO", `[memory] write ${resource}: ${e.message}`, { errno: this.errno }, { cause: e });
      }
      this.budget -= size;
      return super.put(resource, mac, Buffer.concat(parts), opts);
    }
    return super.put(resource, mac, data, opts);
  }
}

let src = "";

beforeAll(async () => {
  src = await fsp.mkdtemp(path.join(tmpdir(), "coffer-write-errors-"));
  await fsp.mkdir(path.join(src, "d"));
  for (let i = 0; i < FILES; i++) await fsp.writeFile(path.join(src, "d", `f${String(i).padStart(3, "0")}`), prng(i + 1, FILE_SIZE));
});

afterAll(async () => {
  if (src) await fsp.rm(src, { recursive: true, force: true });
});

async function run(store: FullStore, workers: number): Promise<{ result: unknown; events: BackupEvent[] }> {
  const repo = await Repository.open(store, { passphrase: async () => null });
  const events: BackupEvent[] = [];
  const importer = new FsImporter(src);
  try {
    await repo.acquire("shared", "backup");
    const r = await backup(repo, { importer, hostname: "h", username: "u", os: "linux", arch: "x64", workers, onEvent: (e) => events.push(e) });
    return { result: r, events };
  } catch (e) {
    return { result: e, events };
  } finally {
    await importer.close();
    await repo.close();
  }
}

describe("a repository write that fails stops the backup, named as such", () => {
  for (const [errno, headline, strerror] of [
    ["ENOSPC", "repository full", "no space left on device"],
    ["EDQUOT", "repository full", "disk quota exceeded"],
    ["EROFS", "repository not writable", "read-only file system"],
    ["EIO", "repository not writable", "input/output error"],
  ] as const) {
    for (const workers of [0, 2]) {
      it(`${errno} (${workers ? "worker threads" : "main thread"}): one REPOSITORY_WRITE error, no entry blamed, repository consistent, next backup works`, async () => {
        const store = new FullStore({ name: "/srv/full-repo" });
        await Repository.create(store, { passphrase: null, packSize: 256 * 1024, kdf: KDF });
        store.errno = errno;
        store.budget = 300 * 1024; // a packfile or so
        const { result, events } = await run(store, workers);
        expect(result).toBeInstanceOf(CofferError);
        const e = result as CofferError;
        expect(e.code).toBe("REPOSITORY_WRITE");
        expect(exitCodeOf(e.code)).toBe(1);
        expect(e.message).toBe(`${headline}: cannot write to /srv/full-repo (${errno}: ${strerror})`);
        expect(events.filter((x) => x.type === "failed" || x.type === "xattr-failed"), "no entry is reported as unreadable").toEqual([]);
        expect(store.failures).toBeGreaterThan(0);

        // What was stored is consistent: every state names a stored packfile, no snapshot is half there.
        store.errno = null;
        const after = await Repository.open(store.view({ readOnly: true }), { passphrase: async () => null });
        const report = await check(after, {});
        expect(report.problems).toEqual([]);
        expect(report.snapshots).toBe(0);
        await after.close();

        // With room again, the next backup works and holds every file.
        const { result: ok, events: okEvents } = await run(store, workers);
        expect(ok).not.toBeInstanceOf(Error);
        expect(okEvents.filter((x) => x.type === "failed" || x.type === "xattr-failed")).toEqual([]);
        const final = await Repository.open(store.view({ readOnly: true }), { passphrase: async () => null });
        const r2 = await check(final, {});
        expect(r2.problems).toEqual([]);
        expect(r2.snapshots).toBe(1);
        await final.close();
      });
    }
  }

  it("classification: errno in a CofferError's data or in a cause; other CofferErrors and programming errors pass through", () => {
    const full = repositoryWriteError(new CofferError("IO", "[fs] write /r/tmp/x: ENOSPC: no space left on device", { errno: "ENOSPC" }), "/r") as CofferError;
    expect(full.code).toBe("REPOSITORY_WRITE");
    expect(full.message).toBe("repository full: cannot write to /r (ENOSPC: no space left on device)");
    const quota = repositoryWriteError(Object.assign(new Error("EDQUOT: disk quota exceeded"), { code: "EDQUOT" }), "/r") as CofferError;
    expect(quota.message).toBe("repository full: cannot write to /r (EDQUOT: disk quota exceeded)");
    const other = repositoryWriteError(new CofferError("IO", "plugin store: connection reset"), "s3:bucket") as CofferError;
    expect(other.code).toBe("REPOSITORY_WRITE");
    expect(other.message).toBe("cannot write to the repository at s3:bucket: plugin store: connection reset");
    const interrupted = new CofferError("INTERRUPTED", "interrupted");
    expect(repositoryWriteError(interrupted, "/r")).toBe(interrupted);
    const locked = new CofferError("LOCKED", "locked");
    expect(repositoryWriteError(locked, "/r")).toBe(locked);
    const bug = new TypeError("x is undefined");
    expect(repositoryWriteError(bug, "/r")).toBe(bug);
    expect(repositoryWriteError(full, "/elsewhere")).toBe(full);
  });
});
