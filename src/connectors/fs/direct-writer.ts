/**
 * Direct writes (O_DIRECT) of staged objects given the `direct` hint: the
 * repository gives it for packfiles filled from a large file's rings. Their
 * bytes would otherwise be copied into the page cache and written back by
 * the packfile's fsync while the file is still being read from the same
 * disk, and that write-back slows the file's reads (docs/PERFORMANCE.md).
 * Not for every packfile: the staging buffer costs 4 MiB and parts wait for
 * the disk rather than the page cache, which raised the peak RSS of a
 * first backup of many small files.
 */
import { closeSync, constants as fsConstants, openSync, write as fsWrite } from "node:fs";
import type { FileHandle } from "node:fs/promises";
import { DIRECT_BLOCK, O_DIRECT, probeDirectOffset } from "../../util/direct-io.js";
import { throwIfAborted } from "../../util/errors.js";
import { copyInto } from "../../util/ring.js";
import { errno, type LocalIo } from "../local-io.js";

/** Bytes staged per direct write. */
const DIRECT_STAGE = 4 << 20;

/** A staging buffer; from `base` on its memory is aligned for direct writes (undefined: not probed yet, null: no offset works). */
interface DirectStage {
  buf: Buffer;
  base: number | null | undefined;
}

/** One store's direct writes: its staging buffers, free for the next staged object, and whether its file system takes direct writes. */
export class DirectWrites {
  readonly #stages: DirectStage[] = [];
  #ok = O_DIRECT !== 0;
  /** Writes done with O_DIRECT, for diagnostics and tests. */
  readonly count = { writes: 0 };
  readonly #io: LocalIo;

  constructor(io: LocalIo) {
    this.#io = io;
  }

  /** Whether direct writes are still worth trying (false once the file system refused them). */
  get available(): boolean {
    return this.#ok;
  }

  /**
   * A direct writer for temp file `tmp` (a second descriptor, opened with
   * O_DIRECT), or null when the file system refuses direct writes (then
   * this store stops trying).
   */
  open(tmp: string, handle: FileHandle): DirectWriter | null {
    let fd: number;
    try {
      fd = openSync(tmp, fsConstants.O_WRONLY | O_DIRECT);
    } catch {
      this.#ok = false; // e.g. EINVAL on tmpfs
      return null;
    }
    const stage = this.#stages.pop() ?? { buf: Buffer.allocUnsafeSlow(DIRECT_STAGE + DIRECT_BLOCK), base: undefined };
    if (stage.base === undefined) stage.base = probeDirectOffset(fd, stage.buf, "write");
    if (stage.base === null) {
      closeSync(fd);
      this.#ok = false;
      return null;
    }
    return new DirectWriter(fd, stage as DirectStage & { base: number }, handle, tmp, this.count, this.#io);
  }

  /** Closes `w`'s descriptor and keeps its staging buffer for the next staged object; gives null. */
  end(w: DirectWriter | null): null {
    if (w) this.#stages.push(w.close());
    return null;
  }
}

/**
 * Writes a staged object through a staging buffer: each DIRECT_STAGE bytes
 * with one direct write at an offset that is a multiple of it; the rest
 * (less than that) at commit through the ordinary descriptor, then the file
 * is cut to its size. A direct write that fails with EINVAL (an alignment
 * the probe did not catch) is done again through the ordinary descriptor,
 * as are all writes after it.
 */
export class DirectWriter {
  #fill = 0;
  #pos = 0;
  #fallback = false;

  constructor(
    private readonly fd: number,
    private readonly stage: DirectStage & { base: number },
    private readonly handle: FileHandle,
    private readonly path: string,
    private readonly count: { writes: number },
    private readonly io: LocalIo,
  ) {}

  async write(parts: readonly Uint8Array[], signal?: AbortSignal): Promise<void> {
    const { buf, base } = this.stage;
    for (const part of parts) {
      for (let o = 0; o < part.byteLength; ) {
        const n = Math.min(part.byteLength - o, DIRECT_STAGE - this.#fill);
        copyInto(buf, base + this.#fill, part.subarray(o, o + n));
        this.#fill += n;
        o += n;
        if (this.#fill === DIRECT_STAGE) await this.#flush(signal);
      }
    }
  }

  /** Writes what is staged: directly while DIRECT_STAGE bytes are, else (or after EINVAL) through the ordinary descriptor. */
  async #flush(signal?: AbortSignal): Promise<void> {
    throwIfAborted(signal);
    const { buf, base } = this.stage;
    const n = this.#fill;
    let done = 0;
    if (n === DIRECT_STAGE && !this.#fallback) {
      try {
        while (done < n) {
          done += await writeAt(this.fd, buf, base + done, n - done, this.#pos + done);
          this.count.writes++;
        }
      } catch (e) {
        if (errno(e) !== "EINVAL" || done % DIRECT_BLOCK !== 0) throw this.io.error(e, "write", this.path, signal);
        this.#fallback = true;
      }
    }
    if (done < n) await this.io.writeFully(this.handle, buf.subarray(base + done, base + n), this.#pos + done, this.path, signal);
    this.#pos += n;
    this.#fill = 0;
  }

  /** Writes the rest and cuts the file to the size written (the alignment probe may have written past it). */
  async finish(signal?: AbortSignal): Promise<void> {
    if (this.#fill > 0) await this.#flush(signal);
    await this.io.run("write", this.path, signal, () => this.handle.truncate(this.#pos));
  }

  /** Closes the direct descriptor; gives back the staging buffer. */
  close(): DirectStage {
    try {
      closeSync(this.fd);
    } catch {
      // already unusable: nothing to release
    }
    return this.stage;
  }
}

function writeAt(fd: number, buf: Buffer, offset: number, length: number, position: number): Promise<number> {
  return new Promise((resolve, reject) => fsWrite(fd, buf, offset, length, position, (e, n) => (e ? reject(e) : resolve(n))));
}
