/**
 * Where the S3 store keeps what, under its prefix (docs/FORMAT.md):
 *   config                 the repository's config blob (written last by create())
 *   packfiles/XX/<64 hex>  packfiles, under the first two hex characters
 *   states/XX/<64 hex>     state objects, the same way
 *   locks/<64 hex>         locks
 * The fan-out costs nothing on S3 but keeps the layout the fs store's, so
 * a repository copied between the two keeps its names.
 */
import { Resource } from "../flags.js";
import { checkResource, macHex } from "../store-checks.js";
import type { Mac } from "../store.js";

export const CONFIG_KEY = "config";

const RESOURCE_DIR: Record<Resource, { dir: string; fanout: boolean }> = {
  [Resource.PACKFILE]: { dir: "packfiles/", fanout: true },
  [Resource.STATE]: { dir: "states/", fanout: true },
  [Resource.LOCK]: { dir: "locks/", fanout: false },
};

const MAC_NAME = /^[0-9a-f]{64}$/;

/** The key of object `mac` of `resource` under `prefix` (which ends in `/` or is empty). */
export function objectKey(prefix: string, resource: Resource, mac: Mac): string {
  const hex = macHex(mac);
  checkResource(resource);
  const layout = RESOURCE_DIR[resource];
  return `${prefix}${layout.dir}${layout.fanout ? `${hex.slice(0, 2)}/` : ""}${hex}`;
}

/** The key prefix a listing of `resource` asks for. */
export function resourcePrefix(prefix: string, resource: Resource): string {
  checkResource(resource);
  return `${prefix}${RESOURCE_DIR[resource].dir}`;
}

/** The hex MAC a listed key names, or undefined for a key that is not an object of the resource (another tool's, a stray name). */
export function macOfKey(listPrefix: string, resource: Resource, key: string): string | undefined {
  if (!key.startsWith(listPrefix)) return undefined;
  const rest = key.slice(listPrefix.length);
  const fanout = RESOURCE_DIR[resource].fanout;
  const name = fanout ? rest.slice(3) : rest;
  if (!MAC_NAME.test(name)) return undefined;
  if (fanout && rest.slice(0, 3) !== `${name.slice(0, 2)}/`) return undefined;
  return name;
}
