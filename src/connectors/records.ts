/**
 * What importers produce and exporters consume (Kloset's connectors.Record).
 * Paths are absolute within the snapshot, '/'-separated, normalised, and
 * start with '/' (the importer's root maps to '/').
 */

export type EntryKind = "file" | "dir" | "symlink" | "fifo" | "socket" | "chardev" | "blockdev" | "other";

export interface FileInfo {
  name: string;
  kind: EntryKind;
  size: number;
  /** POSIX permission and special bits (st_mode & 0o7777). */
  mode: number;
  /** Modification time in nanoseconds since the Unix epoch. */
  mtimeNs: bigint;
  /** Change time in ns when the source knows it (used for change detection only). */
  ctimeNs?: bigint | undefined;
  dev: bigint;
  ino: bigint;
  /** Device number for character and block devices. */
  rdev?: bigint | undefined;
  uid: number;
  gid: number;
  nlink: number;
  username?: string | undefined;
  groupname?: string | undefined;
}

export interface Xattr {
  name: string;
  value: Uint8Array;
}

export interface ImportRecord {
  pathname: string;
  fileInfo: FileInfo;
  /** Symlink target. */
  target?: string | undefined;
  xattrs?: Xattr[] | undefined;
  /** Set when the entry could not be read; the builder records it as an error. */
  error?: string | undefined;
  /** Content of a regular file, read lazily; called at most once. */
  open?: (() => Promise<AsyncIterable<Uint8Array>>) | undefined;
  /**
   * Absolute path of a regular file on this machine (LOCALFS importers):
   * the builder may read it directly, in worker threads, instead of calling
   * open(). It must be the same content open() would give.
   */
  localPath?: string | undefined;
}

export interface ExportRecord {
  pathname: string;
  fileInfo: FileInfo;
  target?: string | undefined;
  xattrs?: Xattr[] | undefined;
  /**
   * Content of a regular file: a sequence of pieces in file order. A piece
   * with `zero` set is a run of zero bytes the exporter may leave as a hole.
   */
  content?: (() => AsyncIterable<ContentPiece>) | undefined;
}

export interface ContentPiece {
  offset: number;
  length: number;
  /** The bytes, unless the whole piece is zeros and `zero` is true. */
  data?: Uint8Array | undefined;
  zero?: boolean | undefined;
}

export interface ImportOptions {
  signal?: AbortSignal | undefined;
}

export interface Importer {
  readonly origin: string;
  readonly type: string;
  readonly root: string;
  readonly flags: number;
  ping(): Promise<void>;
  import(opts?: ImportOptions): AsyncIterable<ImportRecord>;
  close(): Promise<void>;
}

export interface ExportResult {
  pathname: string;
  error?: string | undefined;
}

export interface Exporter {
  readonly origin: string;
  readonly type: string;
  readonly root: string;
  readonly flags: number;
  ping(): Promise<void>;
  /** Write one record; rejects (or returns an error result) when it could not. Directories arrive before their children. */
  export(record: ExportRecord, opts?: ImportOptions): Promise<ExportResult>;
  /**
   * Optional, for LOCALFS exporters: prepares a regular file (without xattrs
   * or extra links) that the caller then writes itself: checks the path,
   * creates its parents, clears what is in the way, and returns the absolute
   * path to create with O_EXCL and the owner ids to set (null: leave them).
   */
  prepareFile?(record: ExportRecord): Promise<{ abs: string; owner: [number, number] | null }>;
  /** Called once after every record: directory mtimes, pending links, xattrs. */
  finish(opts?: ImportOptions): Promise<void>;
  close(): Promise<void>;
}
