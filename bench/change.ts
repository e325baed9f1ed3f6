// The "1% change" phase: a seeded choice of files, each changed in place
// (32 bytes overwritten, 32 appended) after its original is stashed, and
// put back, times included, after the round.

import * as fs from "node:fs";
import * as path from "node:path";
import { walk } from "./corpus.ts";
import { Rng } from "./seeded.ts";

export interface Change {
  rel: string;
  stash: string;
  atime: Date;
  mtime: Date;
}

/** `percent` of the regular files under `root` (at least one), chosen by the seed, in name order. */
export function pickChanged(root: string, percent: number, seed: string): string[] {
  const candidates: string[] = [];
  walk(root, (rel, st) => {
    if (st.isFile()) candidates.push(rel);
  });
  candidates.sort();
  const k = Math.min(candidates.length, Math.max(1, Math.round((candidates.length * percent) / 100)));
  const rng = new Rng(`${seed}/change`);
  for (let i = 0; i < k; i++) {
    const j = i + rng.int(candidates.length - i);
    const tmp = candidates[i]!;
    candidates[i] = candidates[j]!;
    candidates[j] = tmp;
  }
  return candidates.slice(0, k).sort();
}

/** Overwrites 32 bytes at a seeded offset and appends 32 bytes, in place; stashes the original first. */
export function applyChange(root: string, rels: readonly string[], stashDir: string, seed: string): Change[] {
  const rng = new Rng(`${seed}/change-bytes`);
  const changes: Change[] = [];
  fs.mkdirSync(stashDir, { recursive: true });
  rels.forEach((rel, i) => {
    const abs = path.join(root, rel);
    const st = fs.statSync(abs);
    const stash = path.join(stashDir, String(i));
    fs.copyFileSync(abs, stash);
    changes.push({ rel, stash, atime: st.atime, mtime: st.mtime });
    const patch = Buffer.alloc(32);
    for (let j = 0; j < 32; j++) patch[j] = rng.int(256);
    const fd = fs.openSync(abs, "r+");
    try {
      if (st.size >= 64) fs.writeSync(fd, patch, 0, 32, rng.int(st.size - 32));
      fs.writeSync(fd, patch.reverse(), 0, 32, st.size);
    } finally {
      fs.closeSync(fd);
    }
  });
  return changes;
}

/** Puts every changed file back from its stash, with its original times. */
export function revertChange(root: string, changes: readonly Change[]): void {
  for (const c of changes) {
    const abs = path.join(root, c.rel);
    fs.copyFileSync(c.stash, abs);
    fs.utimesSync(abs, c.atime, c.mtime);
    fs.rmSync(c.stash, { force: true });
  }
}
