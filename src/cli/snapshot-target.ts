/**
 * The command line's spelling of a snapshot and a path in it: `SNAP`,
 * `SNAP:PATH`, `:PATH` or nothing, where SNAP is a hex ID prefix or
 * `latest` (empty: latest). Parsed here into the structured arguments of
 * src/snapshot (a SnapshotSelector and a path starting with "/").
 */
import { LATEST, type SnapshotSelector } from "../snapshot/snapshots.js";
import { CofferError } from "../util/errors.js";

export interface SnapshotTarget {
  snapshot: SnapshotSelector;
  /** Normalised: starts with "/", no empty, "." or ".." components. */
  path: string;
}

/** SNAP as typed: the latest snapshot for undefined, "" and "latest", else a prefix of hex digits (USAGE otherwise). */
export function parseSnapshotSelector(snap: string | undefined): SnapshotSelector {
  if (snap === undefined || snap === "" || snap === "latest") return LATEST;
  if (!/^[0-9a-f]+$/i.test(snap)) throw new CofferError("USAGE", `not a snapshot ID prefix: ${JSON.stringify(snap)} (hex digits expected)`);
  return { idPrefix: snap };
}

/** Splits "SNAP:PATH" (either part optional) at its first colon; PATH defaults to "/". */
export function parseSnapshotTarget(arg: string | undefined): SnapshotTarget {
  if (arg === undefined) return { snapshot: LATEST, path: "/" };
  const i = arg.indexOf(":");
  const snap = i < 0 ? arg : arg.slice(0, i);
  const path = i < 0 ? "/" : arg.slice(i + 1);
  return { snapshot: parseSnapshotSelector(snap), path: normalisePath(path) };
}

/** `p` as an absolute path: empty and "." components dropped, ".." taking one off (never above "/"). */
export function normalisePath(p: string): string {
  const parts: string[] = [];
  for (const c of p.split("/")) {
    if (c === "" || c === ".") continue;
    if (c === "..") parts.pop();
    else parts.push(c);
  }
  return `/${parts.join("/")}`;
}
