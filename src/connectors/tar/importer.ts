/**
 * The tar and tar+gz importer: reads an archive (a file, or standard input
 * for "-") with TarReader and yields one record per entry, in archive
 * order, after a "/" root record. Entry names become pathnames under the
 * root; names with a ".." component or a NUL become error records, never
 * paths outside the root.
 *
 * A tar stream is sequential: the importer never moves past an entry until
 * the core is done with it, i.e. its content was read to the end (or the
 * reader released with return()), or the core's answer for the record came
 * on `results`. Until then the next() calls of other workers wait. Without a
 * results channel the importer cannot know that a record will never be
 * read, so an entry that next() must pass before anyone opened it is first
 * spooled (to memory when small, else to a temporary file) and open() reads
 * the spool; spools are dropped once read, and at close().
 *
 * The archive is parsed by TarReader (reader.ts), which reads what GNU tar
 * reads; sparse members come out with their holes as zeros (the restore
 * leaves zero runs as holes again). A later member of a name replaces an
 * earlier one, as on extraction (from a file; from standard input both are
 * yielded, and the snapshot keeps the one stored last, usually the later). An archive that ends without
 * its end-of-archive marker is imported with a warning. Damage is an error
 * naming the member and the byte offset: the damaged member becomes an
 * error record and the import ends (exit 3 when members were stored), or,
 * before any member, the import fails (CORRUPT).
 *
 * Hard links: reading a file, a quick first pass over the headers (seeking
 * over content in a plain tar) finds which names are link targets, so the
 * target and its links share one synthetic inode (dev 1) and nlink = 1 +
 * links; link records carry `linkTarget` (the first name) and no content.
 * Limitation: from standard input there is only one pass, so a target is
 * yielded before anyone knows it has links (nlink 1); its link records
 * still get `linkTarget`, the target's dev and ino, and nlink 2.
 */

import { createReadStream } from "node:fs";
import { mkdtemp, open, rm, stat } from "node:fs/promises";
import type { FileHandle } from "node:fs/promises";
import { hostname, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { pipeline } from "node:stream";
import { createGunzip } from "node:zlib";
import ignore from "ignore";
import type { Ignore } from "ignore";
import { LocationFlag } from "../flags.js";
import type { EntryKind, FileInfo, ImportOptions, Importer, ImportRecord, ImportResult, Xattr } from "../records.js";
import { abortError, CofferError, throwIfAborted } from "../../util/errors.js";
import { escapeName } from "../../util/names.js";
import { aclMask, aclXattr } from "./acl.js";
import { decodeXattrName, makedev, normaliseName, quarantinePath } from "./format.js";
import { TarDamage, TarReader, Typeflag } from "./reader.js";
import type { ChunkSource, SparseMap, TarMember } from "./reader.js";

export interface TarImporterOptions {
  /** The archive is gzip-compressed (tar+gz). */
  gzip: boolean;
  /** What "-" reads (default: process.stdin). */
  stdin?: NodeJS.ReadableStream | undefined;
  onWarning?: ((msg: string) => void) | undefined;
  /** gitignore-style patterns, matched against entry paths relative to the root. */
  excludes?: string[] | undefined;
  /** Do not import extended attributes. */
  noXattr?: boolean | undefined;
}

/** Read size of the archive file. */
const READ_SIZE = 1 << 20;
/** Spooled entries up to this size stay in memory, within SPOOL_MEMORY in all. */
const SPOOL_MEM_ENTRY = 1 << 20;
const SPOOL_MEMORY = 32 << 20;
const SPOOL_PIECE = 1 << 20;

interface Built {
  record?: ImportRecord;
  content?: Content;
}

export class TarImporter implements Importer {
  readonly origin: string = hostname();
  readonly type: string;
  readonly root: string;
  readonly flags: number;
  private readonly path: string | null;
  private readonly opts: TarImporterOptions;
  private readonly ig: Ignore | undefined;
  private used = false;
  private closed = false;
  private readonly sessions = new Set<Session>();
  private readonly spool: Spool;

  constructor(path: string, opts: TarImporterOptions) {
    this.opts = opts;
    this.type = opts.gzip ? "tar+gz" : "tar";
    this.path = path === "-" ? null : resolve(path);
    this.root = this.path ?? "-";
    this.flags = LocationFlag.FILE | (this.path === null ? LocationFlag.STREAM : 0);
    const patterns = (opts.excludes ?? []).filter((p) => p.trim() !== "");
    this.ig = patterns.length > 0 ? ignore().add(patterns) : undefined;
    this.spool = new Spool();
  }

  /** What error messages call the archive. */
  private get archive(): string {
    return this.path ?? "standard input";
  }

  async ping(): Promise<void> {
    if (this.path === null) return;
    let fh: FileHandle | undefined;
    try {
      fh = await open(this.path, "r");
      if (!(await fh.stat()).isFile()) throw new Error("not a regular file");
    } catch (e) {
      throw new CofferError("IO", `cannot read ${this.path}: ${errorText(e)}`, { path: this.path }, { cause: e });
    } finally {
      await fh?.close().catch(() => {});
    }
  }

  import(opts: ImportOptions = {}): AsyncIterable<ImportRecord> {
    // Taken now (not at the first next()), so that a second import() of a stream fails whatever the order.
    const refused = this.path === null && this.used;
    this.used = true;
    // Results are iterated at once: a channel may drop what it is sent before it is read.
    const results = refused || this.closed ? undefined : opts.results?.[Symbol.asyncIterator]();
    return this.run(opts, refused, results);
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all([...this.sessions].map((s) => s.dispose(closedError())));
    await this.spool.close();
  }

  private async *run(opts: ImportOptions, refused: boolean, results: AsyncIterator<ImportResult> | undefined): AsyncGenerator<ImportRecord> {
    if (refused) throw new CofferError("USAGE", "standard input can be imported only once");
    if (this.closed) throw closedError();
    throwIfAborted(opts.signal);
    const s = new Session(this.archive, opts.signal, results, this.spool);
    this.sessions.add(s);
    try {
      let rootMtime = BigInt(Date.now()) * 1_000_000n;
      let pass: FirstPass | null = null;
      if (this.path !== null) {
        try {
          rootMtime = (await stat(this.path, { bigint: true })).mtimeNs;
        } catch (e) {
          throw new CofferError("IO", `cannot read ${this.path}: ${errorText(e)}`, { path: this.path }, { cause: e });
        }
        pass = await s.guard(firstPass(this.path, this.opts.gzip, (rel, dir) => this.excluded(rel, dir), s.stopSignal));
      }
      await s.start(this.path === null ? (this.opts.stdin ?? process.stdin) : this.path, this.opts.gzip);
      const st = new RunState(pass);
      let item = await this.advance(s, null, st);
      // An archive made with `tar -C dir .` starts with "./": it gives the root its metadata.
      if (item !== null && isRootDir(item.m)) {
        const rec = this.entryRecord(item, st, "/", "", "dir", BigInt(++st.ino), s).record;
        yield rec;
        item = await this.advance(s, item, st);
      } else yield syntheticRoot(st, rootMtime);
      s.check();
      while (item !== null) {
        const built = this.build(item, st, s);
        if (built.record !== undefined) {
          st.stored++;
          yield built.record;
          s.check();
        }
        if (built.content !== undefined) await s.settle(built.content);
        item = await this.advance(s, item, st);
      }
      if (st.damage !== null) {
        const d = st.damage;
        if (st.stored === 0 && !d.reported) throw damageError(this.archive, d.error);
        // Members were stored: the damaged one is an error record (unless its content already failed with it), and the import ends.
        if (!d.reported) yield errorRecord(damagePath(d.error, st), "other", BigInt(++st.ino), `damaged tar archive: ${d.error.message}`);
      } else if (s.noEndMarker) this.warn(`${this.archive}: the archive ends without its end-of-archive marker (two zero blocks): imported what it holds`);
      else if (this.opts.gzip) {
        // The tar archive ended: a damaged gzip stream after it (a cut trailer) is named, though nothing was lost.
        const e = await s.drainInput();
        if (e !== null) this.warn(`${this.archive}: the gzip stream is damaged after the end of the tar archive (${errorText(e)}): nothing of the archive is lost`);
      }
    } finally {
      this.sessions.delete(s);
      await s.dispose(closedError());
    }
  }

  /** Passes what is left of `item` and reads the next member; damage ends the archive (kept in st.damage). */
  private async advance(s: Session, item: Item | null, st: RunState): Promise<Item | null> {
    try {
      if (item !== null) await s.finishEntry(item);
      const next = await s.nextEntry(++st.ordinal);
      if (next?.m.note !== undefined) this.warn(`${this.archive}: member ${JSON.stringify(escapeName(next.m.name))} at byte offset ${next.m.offset}: ${next.m.note}`);
      return next;
    } catch (e) {
      if (!(e instanceof TarDamage)) throw e;
      st.damage = { error: e, reported: item?.reader.reported === e };
      return null;
    }
  }

  private excluded(rel: string, isDir: boolean): boolean {
    return this.ig !== undefined && this.ig.ignores(isDir ? `${rel}/` : rel);
  }

  private warn(msg: string): void {
    this.opts.onWarning?.(msg);
  }

  /** The record of one member (none when it is skipped), and its content when it has some to read. */
  private build(item: Item, st: RunState, s: Session): Built {
    const m = item.m;
    const raw = m.name;
    const kind = m.kind;
    const checked = normaliseName(raw);
    const ino = BigInt(++st.ino);
    if ("error" in checked) {
      const pathname = quarantinePath(raw);
      return { record: errorRecord(pathname, kind, ino, `unsafe name ${JSON.stringify(escapeName(raw))} in the archive: ${checked.error}`) };
    }
    const { path: pathname, parts } = checked;
    if (parts.length === 0) {
      // Another root entry: its metadata cannot replace what was already yielded.
      if (kind !== "dir") this.warn(`${this.archive}: entry ${JSON.stringify(escapeName(raw))} (the root) is not a directory: skipped`);
      return {};
    }
    const rel = parts.join("/");
    if (this.excluded(rel, kind === "dir")) return {};
    // A later member of this name replaces this one, as on extraction.
    const last = st.pass?.last.get(pathname);
    if (last !== undefined && last !== item.ordinal) return {};
    const name = parts[parts.length - 1] as string;
    if (kind === undefined) {
      if (m.typeflag === Typeflag.VOLHDR) {
        this.warn(`${this.archive}: volume label ${JSON.stringify(escapeName(raw))} skipped`);
        return {};
      }
      const what = m.typeflag === Typeflag.MULTIVOL ? "a multi-volume continuation" : `an entry of unknown type ${typeflagText(m.typeflag)}`;
      return { record: errorRecord(pathname, "other", ino, `${what}: not supported`) };
    }
    if (kind === "link") return { record: this.linkRecord(pathname, name, m, ino, st) };
    return this.entryRecord(item, st, pathname, name, kind, ino, s);
  }

  private entryRecord(item: Item, st: RunState, pathname: string, name: string, kind: EntryKind, ino: bigint, s: Session): Built & { record: ImportRecord } {
    const m = item.m;
    const info: FileInfo = {
      name,
      kind,
      size: kind === "file" ? (m.sparse?.realSize ?? m.size) : 0,
      mode: m.mode,
      mtimeNs: m.mtimeNs,
      dev: 0n,
      ino,
      uid: m.uid,
      gid: m.gid,
      nlink: 1,
    };
    if (m.ctimeNs !== undefined) info.ctimeNs = m.ctimeNs;
    if (m.uname !== "") info.username = m.uname;
    if (m.gname !== "") info.groupname = m.gname;
    if (kind === "chardev" || kind === "blockdev") info.rdev = makedev(m.devmajor, m.devminor);
    const rec: ImportRecord = { pathname, fileInfo: info };
    if (kind === "symlink") rec.target = m.linkname;
    if (!this.opts.noXattr) {
      const x = xattrsOf(m.pax, (msg) => this.warn(`${this.archive}: member ${JSON.stringify(escapeName(m.name))}: ${msg}`));
      if (x.length > 0) rec.xattrs = x;
      // With an access ACL the group bits are its mask, as the kernel shows them once the ACL is set.
      const acl = x.find((a) => a.name === "system.posix_acl_access");
      const mask = acl === undefined ? undefined : aclMask(acl.value);
      if (mask !== undefined) info.mode = (info.mode & ~0o070) | (mask << 3);
    }
    if (kind !== "dir" && pathname !== "/") {
      const count = st.pass?.links.get(pathname);
      if (count !== undefined) {
        info.dev = 1n;
        info.nlink = 1 + count;
      }
      // From stdin every name may turn out to be a link target; from a file only the known ones.
      if (st.pass === null || count !== undefined) st.targets.set(pathname, { fileInfo: info, target: rec.target, xattrs: rec.xattrs });
    }
    if (kind !== "file") return { record: rec };
    // Damage in the first member's content leaves nothing stored: the backup fails (CORRUPT) rather than committing an empty snapshot.
    if (st.stored === 0) item.reader.fatal = true;
    const content = new Content(pathname, item.reader, info.size, s);
    rec.open = () => content.open();
    contentOf.set(rec, content);
    return { record: rec, content };
  }

  private linkRecord(pathname: string, name: string, m: TarMember, ino: bigint, st: RunState): ImportRecord {
    const checked = normaliseName(m.linkname);
    if ("error" in checked) return errorRecord(pathname, "file", ino, `hard link to ${JSON.stringify(escapeName(m.linkname))}: ${checked.error}`);
    const first = st.firstName.get(checked.path) ?? checked.path;
    const target = st.targets.get(first);
    if (target === undefined) return errorRecord(pathname, "file", ino, `hard link to ${escapeName(first)}: no such entry earlier in the archive (or it was excluded or could not be read)`);
    st.firstName.set(pathname, first);
    const t = target.fileInfo;
    const rec: ImportRecord = {
      pathname,
      fileInfo: { ...t, name, nlink: st.pass === null ? 2 : t.nlink },
      linkTarget: first,
    };
    if (target.target !== undefined) rec.target = target.target;
    if (target.xattrs !== undefined) rec.xattrs = target.xattrs;
    return rec;
  }
}

/** Per import: synthetic inode numbers, what hard links need, and where the archive was damaged. */
class RunState {
  ino = 0;
  /** Members read so far (pax and long-name headers not counted), as the first pass counts them. */
  ordinal = 0;
  /** Records yielded so far (the root not counted). */
  stored = 0;
  /** What links copy from the records that may be their targets, by pathname. */
  readonly targets = new Map<string, Pick<ImportRecord, "fileInfo" | "target" | "xattrs">>();
  /** A link's name -> the first name of its inode (links to links). */
  readonly firstName = new Map<string, string>();
  damage: { error: TarDamage; reported: boolean } | null = null;
  /** What the first pass found; null when there was none (stdin). */
  constructor(readonly pass: FirstPass | null) {}
}

function syntheticRoot(st: RunState, mtimeNs: bigint): ImportRecord {
  return {
    pathname: "/",
    fileInfo: {
      name: "",
      kind: "dir",
      size: 0,
      mode: 0o755,
      mtimeNs,
      dev: 0n,
      ino: BigInt(++st.ino),
      uid: process.getuid?.() ?? 0,
      gid: process.getgid?.() ?? 0,
      nlink: 1,
    },
  };
}

function isRootDir(m: TarMember): boolean {
  const n = normaliseName(m.name);
  return "path" in n && n.path === "/" && m.kind === "dir";
}

function errorRecord(pathname: string, kind: EntryKind | "link" | undefined, ino: bigint, error: string): ImportRecord {
  const name = pathname.slice(pathname.lastIndexOf("/") + 1);
  const k: EntryKind = kind === undefined ? "other" : kind === "link" ? "file" : kind;
  return {
    pathname,
    fileInfo: { name, kind: k, size: 0, mode: 0, mtimeNs: 0n, dev: 0n, ino, uid: 0, gid: 0, nlink: 1 },
    error,
  };
}

/** Where damage is reported: the member's own path when it is usable, else a name saying where. */
function damagePath(d: TarDamage, st: RunState): string {
  if (d.member !== undefined && !d.meta) {
    const n = normaliseName(d.member);
    if ("path" in n && n.parts.length > 0 && !st.targets.has(n.path)) return n.path;
  }
  return quarantinePath(`damaged at byte offset ${d.offset}`);
}

function damageError(archive: string, d: TarDamage): CofferError {
  return new CofferError("CORRUPT", `${archive}: damaged tar archive: ${d.message}`, { path: archive });
}

function typeflagText(flag: number): string {
  return flag >= 0x20 && flag < 0x7f ? `'${String.fromCharCode(flag)}'` : `0x${flag.toString(16)}`;
}

const SCHILY = "SCHILY.xattr.";
const LIBARCHIVE = "LIBARCHIVE.xattr.";
const ACLS: [string, string, boolean][] = [
  ["SCHILY.acl.access", "system.posix_acl_access", true],
  ["SCHILY.acl.default", "system.posix_acl_default", false],
];

/**
 * SCHILY.xattr.NAME (raw value; %3D and %25 in NAME decoded), libarchive's
 * LIBARCHIVE.xattr.NAME (URL-encoded name, base64 value), and the ACLs GNU
 * tar and star keep as text (SCHILY.acl.*) as the kernel's POSIX ACL xattrs.
 */
function xattrsOf(pax: Map<string, Buffer> | null, warn: (msg: string) => void): Xattr[] {
  if (pax === null) return [];
  const out = new Map<string, Uint8Array>();
  for (const [key, value] of pax) {
    if (key.startsWith(SCHILY) && key.length > SCHILY.length) out.set(decodeXattrName(key.slice(SCHILY.length)), new Uint8Array(value));
  }
  for (const [key, value] of pax) {
    if (!key.startsWith(LIBARCHIVE)) continue;
    let name: string;
    try {
      name = decodeURIComponent(key.slice(LIBARCHIVE.length));
    } catch {
      continue;
    }
    if (name !== "" && !out.has(name)) out.set(name, new Uint8Array(Buffer.from(value.toString("latin1"), "base64")));
  }
  for (const [key, name, access] of ACLS) {
    const text = pax.get(key);
    if (text === undefined || text.length === 0 || out.has(name)) continue;
    const bin = aclXattr(text.toString("utf8"), access);
    if (bin === null) continue;
    if (typeof bin === "string") warn(`${key}: ${bin}: not kept`);
    else out.set(name, bin);
  }
  return [...out].map(([name, value]) => ({ name, value }));
}

// ---- the first pass: hard-link targets, and which member of a name is the last ----

interface FirstPass {
  /** Link targets -> number of links to them. */
  links: Map<string, number>;
  /** Pathname -> ordinal of its last member (a later member replaces an earlier one). */
  last: Map<string, number>;
}

/**
 * Reads the headers alone (seeking over content in a plain tar), by the
 * same name checks and excludes as the import. Tolerant: a damaged archive
 * ends the pass where the damage is (the import reports it).
 */
async function firstPass(path: string, gzip: boolean, excluded: (rel: string, dir: boolean) => boolean, signal: AbortSignal): Promise<FirstPass> {
  const links = new Map<string, number>();
  const last = new Map<string, number>();
  const seen = new Set<string>();
  const firstName = new Map<string, string>();
  const src = gzip ? new StreamSource(gunzipOf(createReadStream(path, { highWaterMark: READ_SIZE, signal }))) : await FileSource.open(path, signal);
  try {
    const tar = new TarReader(src);
    for (let ordinal = 1; ; ordinal++) {
      throwIfAborted(signal);
      const m = await tar.next();
      if (m === null) break;
      const n = normaliseName(m.name);
      if ("error" in n || n.parts.length === 0) continue;
      if (excluded(n.parts.join("/"), m.kind === "dir")) continue;
      last.set(n.path, ordinal);
      if (m.kind !== "link") {
        if (m.kind !== "dir") seen.add(n.path);
        continue;
      }
      const t = normaliseName(m.linkname);
      if ("error" in t) continue;
      const first = firstName.get(t.path) ?? t.path;
      if (!seen.has(first)) continue;
      firstName.set(n.path, first);
      links.set(first, (links.get(first) ?? 0) + 1);
    }
  } catch (e) {
    if (signal.aborted) throw e;
    // Damaged or unreadable: the import itself will say so.
  } finally {
    await src.close();
  }
  return { links, last };
}

// ---- the archive's bytes ----

/** A plain archive file: positional reads into fresh buffers (pieces are handed on as they are), seeks over content. */
class FileSource implements ChunkSource {
  private pos = 0;
  private constructor(
    private readonly fh: FileHandle,
    private readonly size: number,
    private readonly signal: AbortSignal,
  ) {}

  static async open(path: string, signal: AbortSignal): Promise<FileSource> {
    const fh = await open(path, "r");
    try {
      return new FileSource(fh, (await fh.stat()).size, signal);
    } catch (e) {
      await fh.close();
      throw e;
    }
  }

  async read(): Promise<Buffer | null> {
    throwIfAborted(this.signal);
    if (this.pos >= this.size) return null;
    const buf = Buffer.allocUnsafe(Math.min(READ_SIZE, this.size - this.pos));
    const { bytesRead } = await this.fh.read(buf, 0, buf.length, this.pos);
    if (bytesRead === 0) return null;
    this.pos += bytesRead;
    return bytesRead === buf.length ? buf : buf.subarray(0, bytesRead);
  }

  skip(n: number): Promise<number> {
    const k = Math.max(0, Math.min(n, this.size - this.pos));
    this.pos += k;
    return Promise.resolve(k);
  }

  async close(): Promise<void> {
    await this.fh.close().catch(() => {});
  }
}

/** A stream (standard input, or gunzip's output: its errors are damage at the offset reached). */
class StreamSource implements ChunkSource {
  private readonly it: AsyncIterator<Buffer | string>;
  private delivered = 0;
  constructor(private readonly stream: NodeJS.ReadableStream) {
    this.it = (stream as AsyncIterable<Buffer | string>)[Symbol.asyncIterator]();
  }

  async read(): Promise<Buffer | null> {
    let r: IteratorResult<Buffer | string>;
    try {
      r = await this.it.next();
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (typeof code === "string" && code.startsWith("Z_")) throw new TarDamage(`not a valid gzip stream (${errorText(e)})`, this.delivered);
      throw e;
    }
    if (r.done === true) return null;
    const b = typeof r.value === "string" ? Buffer.from(r.value) : r.value;
    this.delivered += b.length;
    return b;
  }

  close(): Promise<void> {
    const s = this.stream as unknown as { destroy?: () => void; once?: (ev: string, fn: () => void) => void; destroyed?: boolean; closed?: boolean };
    if (typeof s.destroy !== "function") return Promise.resolve();
    const closed = new Promise<void>((res) => {
      if (s.closed === true || s.once === undefined) res();
      else s.once("close", () => res());
    });
    s.destroy();
    return closed;
  }
}

function gunzipOf(input: NodeJS.ReadableStream): NodeJS.ReadableStream {
  const gunzip = createGunzip({ chunkSize: 256 << 10 });
  pipeline(input, gunzip, () => {});
  return gunzip;
}

// ---- one import: the archive, the members, the gates ----

interface Item {
  m: TarMember;
  /** The member's ordinal (as the first pass counts). */
  ordinal: number;
  reader: MemberReader;
}

class Session {
  private readonly ctl = new AbortController();
  private error: CofferError | undefined;
  private readonly failed: Promise<never>;
  private rejectFailed!: (e: CofferError) => void;
  private src: ChunkSource & { close(): Promise<void> } = { read: () => Promise.resolve(null), close: () => Promise.resolve() };
  private stdin: NodeJS.ReadableStream | undefined;
  private tar: TarReader | null = null;
  /** The content next() waits for (one at a time), by pathname. */
  private readonly gated = new Map<string, Content>();
  private readonly hasResults: boolean;
  private resultsEnded = false;
  private readonly onAbort: () => void;
  private disposing: Promise<void> | undefined;

  constructor(
    private readonly archive: string,
    private readonly signal: AbortSignal | undefined,
    results: AsyncIterator<ImportResult> | undefined,
    private readonly spool: Spool,
  ) {
    this.failed = new Promise<never>((_, reject) => (this.rejectFailed = reject));
    this.failed.catch(() => {});
    this.onAbort = () => void this.dispose(abortError(signal));
    signal?.addEventListener("abort", this.onAbort, { once: true });
    this.hasResults = results !== undefined;
    if (results !== undefined) void this.readResults(results);
  }

  /** Aborted when the import stops (cancelled, closed, failed or done). */
  get stopSignal(): AbortSignal {
    return this.ctl.signal;
  }

  get noEndMarker(): boolean {
    return this.tar?.noEndMarker === true;
  }

  /** Rejects at once when the import stops. */
  guard<T>(p: Promise<T>): Promise<T> {
    return Promise.race([p, this.failed]);
  }

  check(): void {
    if (this.error !== undefined) throw this.error;
  }

  private fail(e: CofferError): void {
    if (this.error !== undefined) return;
    this.error = e;
    this.rejectFailed(e);
    this.ctl.abort(e);
  }

  async start(source: string | NodeJS.ReadableStream, gzip: boolean): Promise<void> {
    try {
      if (typeof source === "string") {
        this.src = gzip ? new StreamSource(gunzipOf(createReadStream(source, { highWaterMark: READ_SIZE, signal: this.ctl.signal }))) : await this.guard(FileSource.open(source, this.ctl.signal));
      } else {
        this.stdin = source;
        this.src = new StreamSource(gzip ? gunzipOf(source) : source);
      }
    } catch (e) {
      throw this.errorFor(e);
    }
    this.tar = new TarReader(this.src);
  }

  /** The next member, or null at the end of the archive; TarDamage when the archive is damaged there. */
  async nextEntry(ordinal = 0): Promise<Item | null> {
    this.check();
    const tar = this.tar as TarReader;
    let m: TarMember | null;
    try {
      m = await this.guard(tar.next());
    } catch (e) {
      if (e instanceof TarDamage) throw e;
      throw this.errorFor(e);
    }
    if (m === null) return null;
    return { m, ordinal, reader: new MemberReader(tar, m.sparse, (e) => this.errorFor(e), this.archive) };
  }

  /** Reads the input to its end (what follows the end-of-archive marker); the error that ends it, if any. */
  async drainInput(): Promise<unknown> {
    try {
      while ((await this.guard(this.src.read())) !== null) {
        /* discard */
      }
      return null;
    } catch (e) {
      this.check();
      return e;
    }
  }

  /** Reads what is left of a member. */
  async finishEntry(item: Item): Promise<void> {
    await this.guard(item.reader.drain());
  }

  /**
   * Waits until the core is done with a file's content (read, released, or
   * answered on results); without results, spools content nobody opened.
   */
  async settle(c: Content): Promise<void> {
    if (c.state === "pending" && !this.hasResults) {
      await this.guard(c.spoolTo(this.spool));
      return;
    }
    if (c.state !== "pending" && c.state !== "open") return;
    if (this.resultsEnded) {
      c.release();
      return;
    }
    this.gated.set(c.path, c);
    try {
      await this.guard(c.released);
    } finally {
      this.gated.delete(c.path);
    }
  }

  /** The error a read failed with, as the import sees it. */
  errorFor(e: unknown): CofferError {
    return this.error ?? inputError(this.archive, e);
  }

  private async readResults(results: AsyncIterator<ImportResult>): Promise<void> {
    try {
      while (true) {
        const r = await this.guard(results.next());
        if (r.done === true) break;
        const rec = r.value.record;
        // The answer may come before the gate: remember it on the content itself.
        const c = contentOf.get(rec) ?? this.gated.get(rec.pathname);
        c?.release();
      }
    } catch {
      return;
    }
    // Every record was answered, or the backup failed: nothing will be read any more.
    this.resultsEnded = true;
    for (const c of this.gated.values()) c.release();
  }

  async dispose(e: CofferError): Promise<void> {
    this.fail(e);
    this.disposing ??= (async () => {
      this.signal?.removeEventListener("abort", this.onAbort);
      for (const c of this.gated.values()) c.release();
      if (this.stdin !== undefined && typeof (this.stdin as { destroy?: unknown }).destroy === "function") {
        (this.stdin as unknown as { destroy(): void }).destroy();
      }
      await this.src.close();
    })();
    await this.disposing;
  }
}

function closedError(): CofferError {
  return new CofferError("INTERRUPTED", "the tar importer was closed");
}

function inputError(archive: string, e: unknown): CofferError {
  if (e instanceof CofferError) return e;
  const err = e as NodeJS.ErrnoException;
  if (err?.name === "AbortError") return new CofferError("INTERRUPTED", "interrupted");
  const code = typeof err?.code === "string" ? err.code : "";
  if (code.startsWith("Z_")) return new CofferError("CORRUPT", `${archive}: not a valid gzip stream: ${errorText(e)}`, { path: archive }, { cause: e });
  if (err?.syscall !== undefined) return new CofferError("IO", `cannot read ${archive}: ${errorText(e)}`, { path: archive }, { cause: e });
  return new CofferError("CORRUPT", `${archive}: damaged tar archive: ${errorText(e)}`, { path: archive }, { cause: e });
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

// ---- entry content ----

/** Zeros handed out for the holes of sparse members (never written to). */
const ZEROS = Buffer.alloc(1 << 20);

/**
 * A member's content from the archive, holes of a sparse member as zeros.
 * Damage is thrown as an IO error naming member and offset (the builder
 * records the entry as failed); `reported` keeps the damage it was given to.
 */
class MemberReader {
  reported: TarDamage | null = null;
  /** Damage is fatal to the import, not to this entry alone. */
  fatal = false;
  private piece = 0;
  private filePos = 0;
  private inPiece = 0;

  constructor(
    private readonly tar: TarReader,
    private readonly sparse: SparseMap | null,
    private readonly toError: (e: unknown) => CofferError,
    private readonly archive: string,
  ) {}

  /** The next piece, or null at the end. */
  async read(): Promise<Buffer | null> {
    try {
      return await this.next();
    } catch (e) {
      if (e instanceof TarDamage) {
        this.reported = e;
        if (this.fatal) throw damageError(this.archive, e);
        throw new CofferError("IO", `damaged tar archive: ${e.message}`);
      }
      throw this.toError(e);
    }
  }

  private async next(): Promise<Buffer | null> {
    const map = this.sparse;
    if (map === null) return this.tar.read();
    const p = map.pieces[this.piece];
    const holeEnd = p === undefined ? map.realSize : p.offset;
    if (this.filePos < holeEnd) {
      const n = Math.min(holeEnd - this.filePos, ZEROS.length);
      this.filePos += n;
      return ZEROS.subarray(0, n);
    }
    if (p === undefined) return null;
    if (this.inPiece >= p.length) {
      this.piece++;
      this.inPiece = 0;
      return this.next();
    }
    const d = await this.tar.read();
    if (d === null) throw new Error("a sparse member's data ended before its map (the reader checked the map)");
    const want = p.length - this.inPiece;
    const out = d.length > want ? d.subarray(0, want) : d;
    if (d.length > want) this.tar.giveBack(d.length - want);
    this.inPiece += out.length;
    this.filePos += out.length;
    return out;
  }

  /** Reads to the end; damage comes out as TarDamage, for the import to end on. */
  async drain(): Promise<void> {
    if (this.reported !== null) throw this.reported;
    try {
      while ((await this.next()) !== null) {
        /* discard */
      }
    } catch (e) {
      throw e instanceof TarDamage ? e : this.toError(e);
    }
  }
}

type ContentState = "pending" | "open" | "released" | "spooled";

/** The content records are keyed by (answers on results find it before its gate). */
const contentOf = new WeakMap<ImportRecord, Content>();

/** A file entry's content, readable once, live from the archive or from the spool. */
class Content {
  state: ContentState = "pending";
  private opened = false;
  private resolveReleased!: () => void;
  readonly released: Promise<void>;
  private spooled: Promise<SpoolRef> | undefined;
  private spoolRef: SpoolRef | undefined;
  private spool: Spool | undefined;

  constructor(
    readonly path: string,
    private readonly reader: MemberReader,
    readonly size: number,
    private readonly session: Session,
  ) {
    this.released = new Promise((res) => (this.resolveReleased = res));
    if (size === 0) this.release(); // nothing to wait for
  }

  release(): void {
    if (this.state === "pending" || this.state === "open") this.state = "released";
    this.resolveReleased();
  }

  async spoolTo(spool: Spool): Promise<void> {
    this.spool = spool;
    this.spooled = spool.add(this.reader, this.size);
    this.state = "spooled";
    try {
      this.spoolRef = await this.spooled;
    } catch (e) {
      // Damage in the content: open() gives the error, the import ends on it.
      if (!(e instanceof CofferError && this.reader.reported !== null)) throw e;
      this.spooled.catch(() => {});
    } finally {
      this.resolveReleased();
    }
  }

  async open(): Promise<AsyncIterable<Uint8Array>> {
    if (this.opened) throw new CofferError("IO", `${this.path}: content can be read only once`);
    this.opened = true;
    if (this.size === 0) return (async function* () {})();
    if (this.state === "pending") {
      this.state = "open";
      return this.live();
    }
    if (this.state === "spooled" && this.spool !== undefined && this.spooled !== undefined) {
      const ref = this.spoolRef ?? (await this.spooled);
      this.spoolRef = undefined;
      return this.spool.read(ref);
    }
    throw new CofferError("IO", `${this.path}: content no longer available (the archive is read in one pass)`);
  }

  private live(): AsyncIterable<Uint8Array> {
    let started = false;
    let done = false;
    return {
      [Symbol.asyncIterator]: () => {
        if (started) throw new CofferError("IO", `${this.path}: content can be read only once`);
        started = true;
        return {
          next: async (): Promise<IteratorResult<Uint8Array>> => {
            if (done) return { done: true, value: undefined };
            if (this.state !== "open") throw new CofferError("IO", `${this.path}: content no longer available`);
            let d: Buffer | null;
            try {
              d = await this.session.guard(this.reader.read());
            } catch (e) {
              done = true;
              this.release();
              throw this.session.errorFor(e);
            }
            if (d === null) {
              done = true;
              this.release();
              return { done: true, value: undefined };
            }
            return { done: false, value: d };
          },
          return: async (): Promise<IteratorResult<Uint8Array>> => {
            done = true;
            this.release();
            return { done: true, value: undefined };
          },
        };
      },
    };
  }
}

// ---- the spool (only without a results channel) ----

type SpoolRef = { mem: Buffer } | { offset: number; length: number };

class Spool {
  private dir: string | undefined;
  private fh: FileHandle | undefined;
  private opening: Promise<FileHandle> | undefined;
  private end = 0;
  private memory = 0;
  private closed = false;

  async add(reader: MemberReader, size: number): Promise<SpoolRef> {
    if (size <= SPOOL_MEM_ENTRY && this.memory + size <= SPOOL_MEMORY) {
      const parts: Buffer[] = [];
      for (let d = await reader.read(); d !== null; d = await reader.read()) parts.push(d);
      const mem = Buffer.concat(parts); // a copy: pieces may be views of larger read buffers
      this.memory += mem.length;
      return { mem };
    }
    const fh = await this.file();
    const offset = this.end;
    this.end += size; // reserved at once: spools never interleave, but stay safe if they do
    let pos = offset;
    for (let d = await reader.read(); d !== null; d = await reader.read()) {
      let w = 0;
      while (w < d.length) w += (await fh.write(d, w, d.length - w, pos + w)).bytesWritten;
      pos += d.length;
    }
    return { offset, length: pos - offset };
  }

  private file(): Promise<FileHandle> {
    if (this.closed) return Promise.reject(closedError());
    this.opening ??= (async () => {
      this.dir = await mkdtemp(join(tmpdir(), "coffer-tar-spool-"));
      this.fh = await open(join(this.dir, "spool"), "w+", 0o600);
      return this.fh;
    })();
    return this.opening;
  }

  read(ref: SpoolRef): AsyncIterable<Uint8Array> {
    if ("mem" in ref) {
      this.memory -= ref.mem.length;
      return (async function* () {
        if (ref.mem.length > 0) yield ref.mem;
      })();
    }
    return this.readFile(ref.offset, ref.length);
  }

  private async *readFile(offset: number, length: number): AsyncGenerator<Uint8Array> {
    let pos = offset;
    const end = offset + length;
    while (pos < end) {
      if (this.closed || this.fh === undefined) throw closedError();
      const buf = Buffer.allocUnsafe(Math.min(SPOOL_PIECE, end - pos));
      const { bytesRead } = await this.fh.read(buf, 0, buf.length, pos);
      if (bytesRead === 0) throw new CofferError("IO", "tar spool: unexpected end of file");
      pos += bytesRead;
      yield bytesRead === buf.length ? buf : buf.subarray(0, bytesRead);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.opening?.catch(() => {});
    await this.fh?.close().catch(() => {});
    if (this.dir !== undefined) await rm(this.dir, { recursive: true, force: true });
    this.fh = undefined;
    this.dir = undefined;
  }
}
