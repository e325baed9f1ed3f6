/**
 * A backup's counts and events (src/snapshot/backup/tally.ts, events.ts):
 * each entry counted by kind and reported as stored, unchanged or failed
 * with the counters as of then; errors recorded for the snapshot; the
 * summary's new blobs counted from when the backup started.
 */
import { describe, expect, it } from "vitest";
import { BlobType } from "../../src/repository/codec.js";
import type { BackupEvent } from "../../src/snapshot/backup/events.js";
import { Tally } from "../../src/snapshot/backup/tally.js";
import { makeRepo } from "../helpers/backup-parts.js";

describe("Tally", () => {
  it("counts entries by kind and reports each with the counters as of then", async () => {
    const repo = await makeRepo();
    const events: BackupEvent[] = [];
    const t = new Tally(repo, (e) => events.push(e));
    t.entryDone("/", "dir", 4096, undefined, "stored");
    t.summary.bytes += 10;
    t.summary.readBytes += 10;
    t.entryDone("/a", "file", 10, undefined, "stored");
    t.summary.bytes += 5;
    t.entryDone("/b", "file", 5, undefined, "unchanged");
    t.entryDone("/l", "symlink", 0, undefined, "unchanged"); // only files are unchanged
    t.recordError("/c", "permission denied");
    t.entryDone("/c", "fifo", 0, "permission denied", "stored");
    expect(t.summary).toMatchObject({ files: 2, dirs: 1, symlinks: 1, others: 1, bytes: 15, readBytes: 10, errors: 1 });
    expect(events).toEqual([
      { type: "stored", path: "/", kind: "dir", size: 4096, entries: 1, files: 0, bytes: 0, readBytes: 0, addedBytes: 0, errors: 0 },
      { type: "stored", path: "/a", kind: "file", size: 10, entries: 2, files: 1, bytes: 10, readBytes: 10, addedBytes: 0, errors: 0 },
      { type: "unchanged", path: "/b", kind: "file", size: 5, entries: 3, files: 2, bytes: 15, readBytes: 10, addedBytes: 0, errors: 0 },
      { type: "stored", path: "/l", kind: "symlink", size: 0, entries: 4, files: 2, bytes: 15, readBytes: 10, addedBytes: 0, errors: 0 },
      { type: "failed", path: "/c", kind: "fifo", size: 0, message: "permission denied", entries: 5, files: 2, bytes: 15, readBytes: 10, addedBytes: 0, errors: 1 },
    ]);
    expect(t.errors).toEqual([["/c", "permission denied"]]);
    await repo.close();
  });

  it("counts the blobs added since it was made, in events and in the snapshot's summary", async () => {
    const repo = await makeRepo();
    await repo.putBlob(BlobType.CHUNK, new Uint8Array([1, 2, 3]));
    const events: BackupEvent[] = [];
    const t = new Tally(repo, (e) => events.push(e));
    await repo.putBlob(BlobType.CHUNK, new Uint8Array(1000).fill(9));
    t.checkpointed(new Uint8Array([0xab, 0x01]), 3);
    expect(events).toEqual([{ type: "checkpoint", id: "ab01", checkpoint: 3, entries: 0, files: 0, bytes: 0, readBytes: 0, addedBytes: 1000, errors: 0 }]);
    expect(t.snapshotSummary()).toMatchObject({ newBlobs: 1, newBytes: 1000 });
    expect(t.summary.newBlobs, "the running counts leave them out").toBe(0);
    await repo.close();
  });

  it("reports failed extended attributes, warnings and the summary; without a listener it only counts", async () => {
    const repo = await makeRepo();
    const events: BackupEvent[] = [];
    const t = new Tally(repo, (e) => events.push(e));
    t.xattrFailed("/f", ["user.a"], "too large");
    t.warn("/d", "listing unreadable");
    const summary = t.snapshotSummary();
    t.committed(new Uint8Array([1]), undefined, summary, 5n);
    t.committed(new Uint8Array([2]), new Uint8Array([1]), summary, 6n);
    expect(events).toEqual([
      { type: "xattr-failed", path: "/f", names: ["user.a"], message: "too large", entries: 0, files: 0, bytes: 0, readBytes: 0, addedBytes: 0, errors: 1 },
      { type: "warning", path: "/d", message: "listing unreadable" },
      { type: "summary", id: "01", parent: undefined, summary, durationNs: 5n },
      { type: "summary", id: "02", parent: "01", summary, durationNs: 6n },
    ]);
    expect(t.errors).toEqual([["/f", "too large"]]);

    const quiet = new Tally(repo, undefined);
    quiet.entryDone("/a", "file", 1, "x", "stored");
    quiet.xattrFailed("/a", ["user.b"], "y");
    quiet.warn("/a", "z");
    expect(quiet.summary).toMatchObject({ files: 1, errors: 1 });
    await repo.close();
  });
});
