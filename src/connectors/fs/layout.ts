/**
 * Where the fs store keeps what, under its root:
 *   CONFIG                   the repository's config blob (written last by create())
 *   packfiles/XX/<64 hex>    packfiles, fanned out by the first two hex chars
 *   states/XX/<64 hex>       state objects, same fan-out
 *   locks/<64 hex>           locks, flat
 *   tmp/                     in-progress writes (and config.replacing: config-lock.ts)
 */
import type { Dirent } from "node:fs";
import { promises as fsp } from "node:fs";
import * as path from "node:path";
import { throwIfAborted } from "../../util/errors.js";
import { Resource } from "../flags.js";
import { errno, type LocalIo } from "../local-io.js";
import { checkResource, macHex } from "../store-checks.js";
import type { Mac } from "../store.js";

export const CONFIG = "CONFIG";
export const TMP = "tmp";

const MAC_NAME = /^[0-9a-f]{64}$/;
const FANOUT_NAME = /^[0-9a-f]{2}$/;

const RESOURCE_DIR: Record<Resource, { dir: string; fanout: boolean }> = {
  [Resource.PACKFILE]: { dir: "packfiles", fanout: true },
  [Resource.STATE]: { dir: "states", fanout: true },
  [Resource.LOCK]: { dir: "locks", fanout: false },
};

/** The directories create() makes: tmp and one per resource. */
export const LAYOUT_DIRS: readonly string[] = [TMP, ...Object.values(RESOURCE_DIR).map((r) => r.dir)];

/** The file of object `mac` of `resource`. */
export function objectPath(root: string, resource: Resource, mac: Mac): string {
  const hex = macHex(mac);
  checkResource(resource);
  const layout = RESOURCE_DIR[resource];
  return layout.fanout ? path.join(root, layout.dir, hex.slice(0, 2), hex) : path.join(root, layout.dir, hex);
}

/** Object files of a resource: regular files with a 64-hex name in the right place. */
export async function* objectFiles(io: LocalIo, root: string, resource: Resource, signal?: AbortSignal): AsyncIterable<{ name: string; path: string }> {
  checkResource(resource);
  const layout = RESOURCE_DIR[resource];
  const base = path.join(root, layout.dir);
  const dirs: { dir: string; prefix: string | undefined }[] = [];
  if (layout.fanout) {
    for (const entry of await readdirOrEmpty(io, base, signal)) {
      if (entry.isDirectory() && FANOUT_NAME.test(entry.name)) {
        dirs.push({ dir: path.join(base, entry.name), prefix: entry.name });
      }
    }
  } else {
    dirs.push({ dir: base, prefix: undefined });
  }
  for (const { dir, prefix } of dirs) {
    throwIfAborted(signal);
    for (const entry of await readdirOrEmpty(io, dir, signal)) {
      if (!entry.isFile() || !MAC_NAME.test(entry.name)) continue;
      if (prefix !== undefined && !entry.name.startsWith(prefix)) continue;
      yield { name: entry.name, path: path.join(dir, entry.name) };
    }
  }
}

/** The entries of `dir`; none when it does not exist. */
export async function readdirOrEmpty(io: LocalIo, dir: string, signal?: AbortSignal): Promise<Dirent[]> {
  try {
    return await fsp.readdir(dir, { withFileTypes: true });
  } catch (e) {
    if (errno(e) === "ENOENT") return [];
    throw io.error(e, "readdir", dir, signal);
  }
}
