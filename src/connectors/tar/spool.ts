/**
 * The spool of a tar import without a results channel: content the import
 * had to pass before anyone opened it, in memory when small, else in a
 * temporary file in the run's scratch directory. Dropped once read, and at
 * close().
 */
import { mkdtemp, open, rm } from "node:fs/promises";
import type { FileHandle } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CofferError } from "../../util/errors.js";
import type { MemberReader } from "./content.js";
import { closedError } from "./errors.js";

/** Spooled entries up to this size stay in memory, within SPOOL_MEMORY in all. */
const SPOOL_MEM_ENTRY = 1 << 20;
const SPOOL_MEMORY = 32 << 20;
const SPOOL_PIECE = 1 << 20;

export type SpoolRef = { mem: Buffer } | { offset: number; length: number };

export class Spool {
  private readonly parent: string;
  private dir: string | undefined;
  private fh: FileHandle | undefined;
  private opening: Promise<FileHandle> | undefined;
  private end = 0;
  private memory = 0;
  private closed = false;

  /** `parent`: where the spool's temporary directory is made. */
  constructor(parent: string = tmpdir()) {
    this.parent = parent;
  }

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
      this.dir = await mkdtemp(join(this.parent, "coffer-tar-spool-"));
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
