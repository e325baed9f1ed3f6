/**
 * Packfiles of a local store kept open by a restore worker, the most
 * recently used last, and positional reads of blobs out of them.
 */
import { closeSync, constants, openSync, readSync } from "node:fs";

export class OpenPacks {
  private readonly fds = new Map<string, number>();

  constructor(private readonly max = 16) {}

  /** Reads `length` bytes at `offset` of the packfile at `path` into `into` (which is that long); false on a short read. */
  read(path: string, offset: number, into: Uint8Array): boolean {
    const fd = this.fd(path);
    let done = 0;
    while (done < into.byteLength) {
      const n = readSync(fd, into, done, into.byteLength - done, offset + done);
      if (n === 0) return false;
      done += n;
    }
    return true;
  }

  private fd(path: string): number {
    let fd = this.fds.get(path);
    if (fd !== undefined) {
      this.fds.delete(path);
    } else {
      fd = openSync(path, constants.O_RDONLY);
      if (this.fds.size >= this.max) {
        const [oldPath, oldFd] = this.fds.entries().next().value!;
        this.fds.delete(oldPath);
        closeSync(oldFd);
      }
    }
    this.fds.set(path, fd);
    return fd;
  }

  close(): void {
    for (const fd of this.fds.values()) closeSync(fd);
    this.fds.clear();
  }
}
