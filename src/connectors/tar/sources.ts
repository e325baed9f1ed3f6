/**
 * The archive's bytes as TarReader reads them: a plain file (positional
 * reads, seeks over content) or a stream (standard input, or gunzip's
 * output, whose errors are damage at the offset reached).
 */
import { createReadStream } from "node:fs";
import { open } from "node:fs/promises";
import type { FileHandle } from "node:fs/promises";
import { pipeline } from "node:stream";
import { createGunzip } from "node:zlib";
import { throwIfAborted } from "../../util/errors.js";
import { errorText } from "./errors.js";
import { TarDamage } from "./reader.js";
import type { ChunkSource } from "./reader.js";

/** Read size of the archive file. */
const READ_SIZE = 1 << 20;

/** A source that can be closed, as the importer holds them. */
export type ArchiveSource = ChunkSource & { close(): Promise<void> };

/** The archive file `path`, through gunzip when `gzip`. */
export async function openArchiveFile(path: string, gzip: boolean, signal: AbortSignal): Promise<ArchiveSource> {
  return gzip ? new StreamSource(gunzipOf(createReadStream(path, { highWaterMark: READ_SIZE, signal }))) : await FileSource.open(path, signal);
}

/** An archive read from a stream (standard input), through gunzip when `gzip`. */
export function streamSource(input: NodeJS.ReadableStream, gzip: boolean): ArchiveSource {
  return new StreamSource(gzip ? gunzipOf(input) : input);
}

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
