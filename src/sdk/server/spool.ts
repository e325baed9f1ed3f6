/**
 * Content held back while a record waits for what follows it on the
 * stream: in memory up to a limit, beyond it in a temporary file.
 */
import { mkdtemp, open, rm } from "node:fs/promises";
import type { FileHandle } from "node:fs/promises";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { MAX_CHUNK } from "../../connectors/plugin/wire.js";
import type { ContentPiece } from "../../connectors/records.js";

/** Bytes kept in memory before the spool moves to a temporary file. */
const SPOOL_MEMORY = 8 << 20;

export class Spool {
  private readonly mem: Uint8Array[] = [];
  private memBytes = 0;
  private file: { dir: string; fh: FileHandle } | undefined;
  private size = 0;

  private constructor(private readonly limit: number) {}

  /** Reads every piece (data pieces; zero pieces as zeros) into a spool. */
  static async from(pieces: AsyncIterable<ContentPiece>, limit = SPOOL_MEMORY): Promise<Spool> {
    const s = new Spool(limit);
    try {
      for await (const p of pieces) await s.append(p.data ?? new Uint8Array(p.length));
    } catch (e) {
      await s.dispose();
      throw e;
    }
    return s;
  }

  private async append(b: Uint8Array): Promise<void> {
    if (this.file === undefined && this.memBytes + b.byteLength > this.limit) {
      const dir = await mkdtemp(path.join(tmpdir(), "coffer-plugin-spool-"));
      this.file = { dir, fh: await open(path.join(dir, "content"), "w+", 0o600) };
      this.size = 0;
      this.memBytes = 0;
      for (const m of this.mem.splice(0)) await this.write(m);
    }
    if (this.file === undefined) {
      this.mem.push(b);
      this.memBytes += b.byteLength;
      this.size += b.byteLength;
    } else {
      await this.write(b);
    }
  }

  private async write(b: Uint8Array): Promise<void> {
    const f = this.file!;
    let done = 0;
    while (done < b.byteLength) done += (await f.fh.write(b, done, b.byteLength - done, this.size + done)).bytesWritten;
    this.size += b.byteLength;
  }

  /** The spooled content as pieces, in order. */
  async *pieces(): AsyncGenerator<ContentPiece> {
    let offset = 0;
    if (this.file === undefined) {
      for (const data of this.mem) {
        yield { offset, length: data.byteLength, data };
        offset += data.byteLength;
      }
      return;
    }
    while (offset < this.size) {
      const want = Math.min(MAX_CHUNK, this.size - offset);
      const buf = Buffer.allocUnsafe(want);
      const { bytesRead } = await this.file.fh.read(buf, 0, want, offset);
      if (bytesRead === 0) throw new Error("spool file shrank");
      yield { offset, length: bytesRead, data: buf.subarray(0, bytesRead) };
      offset += bytesRead;
    }
  }

  async dispose(): Promise<void> {
    this.mem.length = 0;
    const f = this.file;
    this.file = undefined;
    if (f === undefined) return;
    await f.fh.close().catch(() => {});
    await rm(f.dir, { recursive: true, force: true });
  }
}
