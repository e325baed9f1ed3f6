/**
 * Checkpoints and answers (src/snapshot/backup/checkpointer.ts): the
 * default policies, answers at once for other importers, NEEDACK acks held
 * until a committed snapshot holds the record, when a checkpoint is due,
 * and a checkpoint's failure stopping the run.
 */
import { describe, expect, it } from "vitest";
import { LocationFlag } from "../../src/connectors/flags.js";
import {
  DEFAULT_CHECKPOINTS,
  defaultCheckpoints,
  NEEDACK_CHECKPOINTS,
  NEEDACK_FILE_STORE_CHECKPOINTS,
} from "../../src/snapshot/backup/checkpointer.js";
import { isPartial } from "../../src/snapshot/header.js";
import { listSnapshots } from "../../src/snapshot/snapshots.js";
import { TreeReader } from "../../src/snapshot/tree-reader.js";
import { CofferError } from "../../src/util/errors.js";
import { toHex } from "../../src/util/hex.js";
import { dirRecord, fileRecord, makeParts, makeRepo, type Parts, settle } from "../helpers/backup-parts.js";

/** Stores `path` in the scan cache as the entry saver would (a directory, so nothing is read). */
function store(p: Parts, path: string): ReturnType<typeof dirRecord> {
  const r = dirRecord(path);
  expect(p.entries.saveNow(r)).toBe(true);
  return r;
}

describe("defaultCheckpoints", () => {
  it("NEEDACK importers get frequent checkpoints, less so into a single-file store; others rare ones", () => {
    expect(defaultCheckpoints(0, 0)).toBe(DEFAULT_CHECKPOINTS);
    expect(defaultCheckpoints(0, LocationFlag.FILE)).toBe(DEFAULT_CHECKPOINTS);
    expect(defaultCheckpoints(LocationFlag.NEEDACK, 0)).toBe(NEEDACK_CHECKPOINTS);
    expect(defaultCheckpoints(LocationFlag.NEEDACK | LocationFlag.STREAM, LocationFlag.FILE)).toBe(NEEDACK_FILE_STORE_CHECKPOINTS);
  });
});

describe("Checkpointer", () => {
  it("answers an importer without NEEDACK at once, ok or with the error", async () => {
    const repo = await makeRepo();
    const p = makeParts(repo);
    const ok = fileRecord("/a", new Uint8Array(0));
    const bad = fileRecord("/b", new Uint8Array(0));
    p.checkpointer.stored(ok);
    p.checkpointer.failed(bad, "no");
    await settle();
    expect(p.answers).toEqual([{ record: ok }, { record: bad, error: "no" }]);
    await p.close();
    await repo.close();
  });

  it("NEEDACK: an ok answer waits for the checkpoint that commits the record; errors come at once", async () => {
    const repo = await makeRepo();
    const p = makeParts(repo, { needAck: true, policy: { intervalMs: 0, bytes: 1 } });
    const root = store(p, "/");
    const bad = fileRecord("/b", new Uint8Array(0));
    p.checkpointer.failed(bad, "no");
    await settle();
    expect(p.answers).toEqual([{ record: bad, error: "no" }]);
    expect(p.events.filter((e) => e.type === "checkpoint")).toEqual([]);

    // Due once content was read: the next stored entry starts it.
    p.tally.summary.readBytes += 10;
    const d = store(p, "/d");
    await p.checkpointer.settle();
    await settle();
    expect(p.answers.map((a) => a.record)).toEqual([bad, root, d]);
    const cp = p.events.filter((e) => e.type === "checkpoint");
    expect(cp).toHaveLength(1);
    expect(cp[0]).toMatchObject({ checkpoint: 1, entries: 2, readBytes: 10 });

    // What was acked is in a committed partial snapshot.
    const all = (await listSnapshots(repo, undefined, { superseded: true })).snapshots;
    expect(all.map((h) => toHex(h.id))).toEqual([(cp[0] as { id: string }).id]);
    expect(isPartial(all[0]!)).toBe(true);
    expect(await new TreeReader(repo).lookup(all[0]!.root, "/d")).toMatchObject({ name: "d" });

    // Not due again until more is read; the rest is acked by ackAll (the final commit).
    const e = store(p, "/e");
    await p.checkpointer.settle();
    await settle();
    expect(p.answers).toHaveLength(3);
    p.checkpointer.ackAll();
    await settle();
    expect(p.answers.map((a) => a.record)).toEqual([bad, root, d, e]);
    await p.close();
    await repo.close();
  });

  it("starts none when nothing is new, when the policy never falls due, or once the run is stopped", async () => {
    const repo = await makeRepo();
    const never = makeParts(repo, { needAck: true });
    never.tally.summary.readBytes += 1 << 30;
    store(never, "/");
    await never.checkpointer.settle();
    expect(never.events.filter((e) => e.type === "checkpoint")).toEqual([]);
    await never.close();

    const clean = makeParts(repo, { needAck: true, policy: { intervalMs: 0, bytes: 1 } });
    clean.tally.summary.readBytes += 10;
    clean.checkpointer.maybe();
    await clean.checkpointer.settle();
    expect(clean.events.filter((e) => e.type === "checkpoint"), "nothing stored yet").toEqual([]);
    await clean.close();

    const stop = new AbortController();
    const stopped = makeParts(repo, { needAck: true, policy: { intervalMs: 0, bytes: 1 }, signal: stop.signal });
    stopped.tally.summary.readBytes += 10;
    stop.abort();
    store(stopped, "/");
    await stopped.checkpointer.settle();
    expect(stopped.events.filter((e) => e.type === "checkpoint")).toEqual([]);
    await stopped.close();
    expect((await listSnapshots(repo, undefined, { superseded: true })).snapshots).toEqual([]);
    await repo.close();
  });

  it("a checkpoint that fails keeps its error for the run, answers none of its records, and the answers still end", async () => {
    const repo = await makeRepo();
    repo.commitSnapshot = async () => {
      throw new CofferError("IO", "store gone");
    };
    const p = makeParts(repo, { needAck: true, policy: { intervalMs: 0, bytes: 1 } });
    p.tally.summary.readBytes += 10;
    store(p, "/");
    await expect(p.checkpointer.settle()).rejects.toMatchObject({ code: "IO", message: "store gone" });
    expect(() => p.checkpointer.throwIfFailed()).toThrow("store gone");
    expect(p.answersEnded).toBe(false);
    await p.close();
    await settle();
    expect(p.answers).toEqual([]);
    expect(p.answersEnded).toBe(true);
    await repo.close();
  });
});
