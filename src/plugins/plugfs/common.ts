/**
 * Shared by the plugfs example plugins: a directory on this machine, named
 * `plugfs:/path`, `plugfs:///path` or a bare path (relative to the host's
 * working directory), wrapping coffer's built-in fs connectors.
 */
import { CofferError, localPath, parseLocation } from "coffer/sdk";

/** The absolute path a plugfs location names (the config's `location`). */
export function plugfsPath(config: Record<string, string>, cwd: string): string {
  const location = config.location;
  if (location === undefined || location === "") throw new CofferError("USAGE", `plugfs: option "location" is required (plugfs:/path)`);
  const loc = parseLocation(location);
  if (loc.rest === "-") throw new CofferError("USAGE", `plugfs: location "${location}" must be a directory`);
  return localPath(loc, cwd);
}

/**
 * `inner` seen with another type (the protocol it was made for): every
 * other property and method is the inner connector's, methods bound to it.
 */
export function withType<T extends object>(inner: T, type: string): T {
  return new Proxy(inner, {
    get(target, key) {
      if (key === "type") return type;
      const v: unknown = Reflect.get(target, key, target);
      return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}
