/**
 * One import of a tar archive: its input, the members read in turn, and
 * the gates that keep the reader on a member until the core is done with
 * its content (read, released, or answered on `results`).
 */
import { abortError, CofferError } from "../../util/errors.js";
import type { ImportResult } from "../records.js";
import { type Content, contentOf, MemberReader } from "./content.js";
import { inputError } from "./errors.js";
import { TarDamage, TarReader } from "./reader.js";
import type { TarMember } from "./reader.js";
import { type ArchiveSource, openArchiveFile, streamSource } from "./sources.js";
import type { Spool } from "./spool.js";

export interface Item {
  m: TarMember;
  /** The member's ordinal (as the first pass counts). */
  ordinal: number;
  reader: MemberReader;
}

export class Session {
  private readonly ctl = new AbortController();
  private error: CofferError | undefined;
  private readonly failed: Promise<never>;
  private rejectFailed!: (e: CofferError) => void;
  private src: ArchiveSource = { read: () => Promise.resolve(null), close: () => Promise.resolve() };
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
        this.src = await this.guard(openArchiveFile(source, gzip, this.ctl.signal));
      } else {
        this.stdin = source;
        this.src = streamSource(source, gzip);
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
