/**
 * The first pass over an archive file: which names are hard-link targets
 * (and how many links each has), and which member of a name is the last.
 */
import { throwIfAborted } from "../../util/errors.js";
import { normaliseName } from "./format.js";
import { TarReader } from "./reader.js";
import { openArchiveFile } from "./sources.js";

export interface FirstPass {
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
export async function firstPass(path: string, gzip: boolean, excluded: (rel: string, dir: boolean) => boolean, signal: AbortSignal): Promise<FirstPass> {
  const links = new Map<string, number>();
  const last = new Map<string, number>();
  const seen = new Set<string>();
  const firstName = new Map<string, string>();
  const src = await openArchiveFile(path, gzip, signal);
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
