/**
 * What a backup reports while it runs (BackupOptions.onEvent): a union on
 * `type` that a live display or an NDJSON writer renders as it likes.
 * Nothing here is formatted: paths as the importer gave them, sizes in
 * bytes, snapshot IDs in hex.
 */
import type { EntryKind } from "../../connectors/records.js";
import type { Summary } from "../header.js";

/** Where the backup stands as of an event: the counters a progress display shows. */
export interface BackupCounters {
  /** Entries done: stored, found unchanged or failed. */
  entries: number;
  /** Regular files done. */
  files: number;
  /** Content bytes of the files done, read or not. */
  bytes: number;
  /** Content bytes read from the source and chunked. */
  readBytes: number;
  /** Raw bytes of the new blobs this backup added to the repository. */
  addedBytes: number;
  /** Entries and extended attributes that failed. */
  errors: number;
}

/** An entry stored: anything but a file, or a file whose content was read or shared with a hard link. */
export interface EntryStoredEvent extends BackupCounters {
  type: "stored";
  path: string;
  kind: EntryKind;
  /** The entry's size (a file's content bytes). */
  size: number;
}

/** A file found unchanged since the parent snapshot: its chunks reused, its content not read. */
export interface EntryUnchangedEvent extends BackupCounters {
  type: "unchanged";
  path: string;
  kind: "file";
  size: number;
}

/** An entry stored as failed (the importer's error, or its content could not be read); its record is answered with `message`. */
export interface EntryFailedEvent extends BackupCounters {
  type: "failed";
  path: string;
  kind: EntryKind;
  size: number;
  message: string;
}

/** Extended attributes sent as records of their own that could not be read, or whose entry never came. */
export interface XattrFailedEvent extends BackupCounters {
  type: "xattr-failed";
  path: string;
  names: string[];
  message: string;
}

/** A partial snapshot committed (docs/FORMAT.md, "Checkpoints"). */
export interface CheckpointEvent extends BackupCounters {
  type: "checkpoint";
  /** The partial snapshot's ID, hex. */
  id: string;
  /** 1 for the run's first checkpoint, then 2, ... */
  checkpoint: number;
}

/** Something the backup worked around, e.g. an unreadable parent listing; `path` is what it is about. */
export interface WarningEvent {
  type: "warning";
  path: string;
  message: string;
}

/** The snapshot committed: the last event of a backup that succeeds. */
export interface SummaryEvent {
  type: "summary";
  /** The snapshot's ID, hex. */
  id: string;
  /** The parent snapshot's ID, hex, when there was one. */
  parent?: string | undefined;
  summary: Summary;
  durationNs: bigint;
}

export type BackupEvent = EntryStoredEvent | EntryUnchangedEvent | EntryFailedEvent | XattrFailedEvent | CheckpointEvent | WarningEvent | SummaryEvent;
