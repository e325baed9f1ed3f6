/**
 * O_DIRECT helpers shared by the fs store's direct writes and the chunk
 * workers' direct reads: the flag (0 where the platform has none), the
 * alignment both must keep, and the probe that finds an aligned offset in
 * a buffer.
 */
import { constants, readSync, writeSync } from "node:fs";

/** The O_DIRECT open flag, or 0 where the platform has none. */
export const O_DIRECT: number = constants.O_DIRECT ?? 0;

/** Direct I/O keeps the buffer address, the file offset and the length to multiples of this (the largest logical block size in use). */
export const DIRECT_BLOCK = 4096;

/**
 * The offset of `buf` from which direct I/O on `fd` works, or null when
 * none does. JavaScript cannot see a buffer's address, so a DIRECT_BLOCK
 * read or write at the start of the file is tried from each candidate
 * offset in turn: a misaligned one fails with EINVAL and moves no bytes.
 * A probing write leaves a block at the start of the file for the caller
 * to overwrite (or cut off).
 */
export function probeDirectOffset(fd: number, buf: Buffer, op: "read" | "write"): number | null {
  for (let at = 0; at < DIRECT_BLOCK; at += 16) {
    try {
      if (op === "read") readSync(fd, buf, at, DIRECT_BLOCK, 0);
      else writeSync(fd, buf, at, DIRECT_BLOCK, 0);
      return at;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EINVAL") return null;
    }
  }
  return null;
}
