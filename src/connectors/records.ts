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
  /**
   * A tag the source gives the file's content, that changes when the
   * content does (S3's ETag): change detection only, compared with the
   * parent snapshot's as size and mtime are.
   */
  contentTag?: string | undefined;
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
  /**
   * With ImportOptions.lazyXattrs, instead of `xattrs`: reads the entry's
   * extended attributes, at most once. A caller that finds the entry
   * unchanged in its parent snapshot, ctime included (setting an attribute
   * changes it), may keep the parent's attributes and never call it.
   */
  readXattrs?: (() => Xattr[] | undefined) | undefined;
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
  /**
   * A hard link: the pathname of an earlier record of this import whose
   * content this one shares (tar link entries). The builder reuses that
   * record's chunks; open() is not called.
   */
  linkTarget?: string | undefined;
  /**
   * Set on a record that carries one extended attribute of the entry at
   * `pathname` (Kloset sends them as records of their own, after their
   * entry): its value is the content, read with open(); fileInfo is not
   * used. The builder adds it to that entry.
   */
  xattrName?: string | undefined;
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
  /**
   * The core's answers (Kloset's result stream): exactly one per record
   * yielded, in no particular order, sent once the core is done with the
   * record (its content will not be read again, so its reader may be
   * released). For an importer that declared NEEDACK an ok answer (no error)
   * also means the record's data is durably stored and reachable from a
   * committed snapshot (a checkpoint or the final one), so the source may be
   * deleted; such answers come at checkpoints. The stream ends once every
   * record has been answered, or when the backup fails (records not
   * answered then were not stored). An importer that never iterates it
   * costs nothing.
   */
  results?: AsyncIterable<ImportResult> | undefined;
  /**
   * The caller takes extended attributes as records of their own
   * (`xattrName`), after their entry, as the builder does: an importer may
   * then yield entries before it knows their attributes, and send those
   * later. Without it, attributes come on their entry's record.
   */
  xattrRecords?: boolean | undefined;
  /** The caller takes `readXattrs` in place of `xattrs` (an importer may still give `xattrs`). */
  lazyXattrs?: boolean | undefined;
}

export interface ImportResult {
  record: ImportRecord;
  /** Undefined when the record is stored; else why it was not. */
  error?: string | undefined;
}

/**
 * What a connector is told when it is made (Kloset's connectors.Options).
 */
export interface ConnectorOptions {
  hostname: string;
  os: string;
  arch: string;
  /** The directory relative locations were given from. */
  cwd: string;
  maxConcurrency: number;
  /** gitignore-style patterns (importers). */
  excludes: string[];
  noXattr: boolean;
  /** Where connectors may print warnings (not errors: those travel in records and results). */
  onWarning?: ((msg: string) => void) | undefined;
  /** Repositories opened by read-only commands: the store must refuse writes. */
  readOnly?: boolean | undefined;
  /** Standard streams, for the stdio connectors (default: the process's). */
  stdin?: NodeJS.ReadableStream | undefined;
  stdout?: NodeJS.WritableStream | undefined;
  /** The command's cancellation (Ctrl-C): connectors holding processes or connections end them. */
  signal?: AbortSignal | undefined;
  /** `restore --force`: an exporter writing one file (tar:FILE) may replace a file already there; without it, it refuses to. */
  overwrite?: boolean | undefined;
  /** The run's environment: what plugin processes start with (plus their spec's); without it, they have only their spec's. */
  env?: Readonly<Record<string, string | undefined>> | undefined;
  /** The run's scratch directory, for spools and plugin sockets (default: os.tmpdir()). */
  tmpDir?: string | undefined;
}

/**
 * Kloset's importer: origin (where the source is, e.g. a host name), type
 * (the protocol), root (the source's path, shown in `ls`), flags
 * (LocationFlag bits: STREAM importers are imported once, with no counting
 * pass; NEEDACK importers get `results`).
 * import() is called once per backup (at most once for STREAM importers);
 * close() always follows, whatever happened.
 */
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

/**
 * Kloset's exporter. Its Export(records, results) stream pair is expressed
 * per record: the core calls export() once per record, in stream order
 * (directories before their children; several may be in flight, hard links
 * one at a time), and each call's promise is that record's Result, so the
 * pairing of records and results is explicit. EXPORTXATTR exporters get
 * extended attributes on the records. finish() ends the stream; close()
 * always follows.
 */
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
  /**
   * Called once after every record: directory mtimes, pending links, xattrs.
   * May return the entries that failed at this stage (their error set).
   */
  finish(opts?: ImportOptions): Promise<ExportResult[] | void>;
  close(): Promise<void>;
}
