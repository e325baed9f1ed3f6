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
 * the spool; spools are dropped once read, and at close(). The session,
 * the content and the spool are session.ts, content.ts and spool.ts.
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
 * over content in a plain tar; link-pass.ts) finds which names are link targets, so the
 * target and its links share one synthetic inode (dev 1) and nlink = 1 +
 * links; link records carry `linkTarget` (the first name) and no content.
 * Limitation: from standard input there is only one pass, so a target is
 * yielded before anyone knows it has links (nlink 1); its link records
 * still get `linkTarget`, the target's dev and ino, and nlink 2.
 */

import { open, stat } from "node:fs/promises";
import type { FileHandle } from "node:fs/promises";
import { hostname } from "node:os";
import { resolve } from "node:path";
import ignore from "ignore";
import type { Ignore } from "ignore";
import { LocationFlag } from "../flags.js";
import type { EntryKind, FileInfo, ImportOptions, Importer, ImportRecord, ImportResult } from "../records.js";
import { CofferError, throwIfAborted } from "../../util/errors.js";
import { escapeName } from "../../util/names.js";
import { aclMask } from "./acl.js";
import { Content, contentOf } from "./content.js";
import { closedError, damageError, errorText } from "./errors.js";
import { makedev, normaliseName, quarantinePath } from "./format.js";
import { type FirstPass, firstPass } from "./link-pass.js";
import { xattrsOf } from "./pax-xattrs.js";
import { TarDamage, Typeflag } from "./reader.js";
import type { TarMember } from "./reader.js";
import { type Item, Session } from "./session.js";
import { Spool } from "./spool.js";

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
  /** Where content spooled to disk goes (default: os.tmpdir()). */
  tmpDir?: string | undefined;
}

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
    this.spool = new Spool(opts.tmpDir);
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

function typeflagText(flag: number): string {
  return flag >= 0x20 && flag < 0x7f ? `'${String.fromCharCode(flag)}'` : `0x${flag.toString(16)}`;
}
