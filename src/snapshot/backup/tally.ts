/**
 * A backup's counts (the header's Summary), the errors it records, and the
 * events that report them (events.ts). Each event is one object, built only
 * when someone listens: the per-entry path allocates nothing else here.
 */
import type { EntryKind } from "../../connectors/records.js";
import type { Repository } from "../../repository/repository.js";
import type { Summary } from "../header.js";
import { toHex } from "../../util/hex.js";
import type { BackupEvent } from "./events.js";

function emptySummary(): Summary {
  return { files: 0, dirs: 0, symlinks: 0, others: 0, bytes: 0, errors: 0, readBytes: 0, newBlobs: 0, newBytes: 0 };
}

/** How an entry was stored (the type of its event). */
export type EntryOutcome = "stored" | "unchanged";

export class Tally {
  /** Counted as the backup goes; newBlobs and newBytes are filled in by summary(). */
  readonly summary: Summary = emptySummary();
  /** Paths and messages of what failed, stored with the snapshot (its ERRORS blob). */
  readonly errors: [string, string][] = [];
  private readonly blobs0: number;
  private readonly rawBytes0: number;

  constructor(
    private readonly repo: Repository,
    private readonly onEvent: ((e: BackupEvent) => void) | undefined,
  ) {
    this.blobs0 = repo.written.blobs;
    this.rawBytes0 = repo.written.rawBytes;
  }

  /** The summary as of now, with the blobs this backup added. */
  snapshotSummary(): Summary {
    return { ...this.summary, newBlobs: this.repo.written.blobs - this.blobs0, newBytes: this.repo.written.rawBytes - this.rawBytes0 };
  }

  /** Counts an error and records it for the snapshot (its event comes with the entry, see entryDone). */
  recordError(path: string, message: string): void {
    this.summary.errors++;
    this.errors.push([path, message]);
  }

  /** Counts an entry done and reports it: failed when it carries `error`, else as `outcome`. */
  entryDone(path: string, kind: EntryKind, size: number, error: string | undefined, outcome: EntryOutcome): void {
    const s = this.summary;
    if (kind === "file") s.files++;
    else if (kind === "dir") s.dirs++;
    else if (kind === "symlink") s.symlinks++;
    else s.others++;
    const on = this.onEvent;
    if (!on) return;
    // One object per event, its counters written out (no intermediate object on this per-entry path).
    const entries = s.files + s.dirs + s.symlinks + s.others;
    const addedBytes = this.repo.written.rawBytes - this.rawBytes0;
    if (error !== undefined) {
      on({ type: "failed", path, kind, size, message: error, entries, files: s.files, bytes: s.bytes, readBytes: s.readBytes, addedBytes, errors: s.errors });
    } else if (outcome === "unchanged" && kind === "file") {
      on({ type: "unchanged", path, kind, size, entries, files: s.files, bytes: s.bytes, readBytes: s.readBytes, addedBytes, errors: s.errors });
    } else on({ type: "stored", path, kind, size, entries, files: s.files, bytes: s.bytes, readBytes: s.readBytes, addedBytes, errors: s.errors });
  }

  /** Records and reports extended attributes (records of their own) that failed. */
  xattrFailed(path: string, names: string[], message: string): void {
    this.recordError(path, message);
    this.onEvent?.({ type: "xattr-failed", path, names, message, ...this.counters() });
  }

  checkpointed(id: Uint8Array, checkpoint: number): void {
    this.onEvent?.({ type: "checkpoint", id: toHex(id), checkpoint, ...this.counters() });
  }

  readonly warn = (path: string, message: string): void => this.onEvent?.({ type: "warning", path, message });

  committed(id: Uint8Array, parent: Uint8Array | undefined, summary: Summary, durationNs: bigint): void {
    this.onEvent?.({ type: "summary", id: toHex(id), parent: parent && toHex(parent), summary, durationNs });
  }

  private counters() {
    const s = this.summary;
    return {
      entries: s.files + s.dirs + s.symlinks + s.others,
      files: s.files,
      bytes: s.bytes,
      readBytes: s.readBytes,
      addedBytes: this.repo.written.rawBytes - this.rawBytes0,
      errors: s.errors,
    };
  }
}
