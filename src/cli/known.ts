/**
 * Known repositories (docs/CLI.md, "Known repositories"): what this client
 * has seen of each repository it opened or created, so that a configuration
 * rewritten by someone without the passphrase is refused rather than used.
 * A plaintext configuration cannot be authenticated (its key is public): an
 * encrypted repository's configuration rewritten to say "plaintext" would
 * have coffer write new data in the clear. So per repository ID, and per
 * location, a small record says whether it was encrypted and its format
 * version; a repository seen encrypted is refused plaintext, and one seen at
 * version 2 is refused at version 1 (whose configuration is not
 * authenticated). Files, under $XDG_CACHE_HOME/coffer (else ~/.cache/coffer):
 *   repositories/<id hex>.json     {"v":1,"id","encrypted","version"}
 *   locations/<SHA-256 hex of the location>.json  {"v":1,"location","id","encrypted","version"}
 * each written whole to a temporary file and renamed into place. A record
 * that cannot be read is a warning, and is then rewritten.
 */
import { createHash, randomBytes } from "node:crypto";
import { promises as fsp } from "node:fs";
import { homedir } from "node:os";
import { isAbsolute, join } from "node:path";
import { localPath, parseLocation } from "../connectors/location.js";
import type { RepositoryConfig } from "../repository/config.js";
import { CorruptError } from "../util/errors.js";
import { toHex } from "../util/hex.js";

interface Seen {
  /** Repository ID, hex. */
  id: string;
  encrypted: boolean;
  /** Highest format version seen (repositories/), or the last one (locations/). */
  version: number;
  location?: string;
}

/** $XDG_CACHE_HOME/coffer, else ~/.cache/coffer (a relative XDG_CACHE_HOME is ignored, as the XDG spec says). */
export function knownDir(env: NodeJS.ProcessEnv): string {
  const x = env.XDG_CACHE_HOME;
  const base = x !== undefined && x !== "" && isAbsolute(x) ? x : join(env.HOME !== undefined && env.HOME !== "" ? env.HOME : homedir(), ".cache");
  return join(base, "coffer");
}

/** A location as recorded: a path of the fs or ptar store made absolute, anything else as given. */
export function locationKey(location: string, cwd: string): string {
  try {
    const loc = parseLocation(location, { forStore: true });
    if (loc.proto === "fs" || loc.proto === "ptar") return `${loc.proto}:${localPath(loc, cwd)}`;
    return loc.raw;
  } catch {
    return location;
  }
}

const ID = /^[0-9a-f]{64}$/;

function parseSeen(text: string, withLocation: boolean): Seen | string {
  let o: unknown;
  try {
    o = JSON.parse(text);
  } catch (e) {
    return `not JSON (${(e as Error).message})`;
  }
  if (typeof o !== "object" || o === null) return "not a record";
  const r = o as Record<string, unknown>;
  if (r.v !== 1) return `unknown record version ${JSON.stringify(r.v)}`;
  if (typeof r.id !== "string" || !ID.test(r.id) || typeof r.encrypted !== "boolean" || typeof r.version !== "number" || !Number.isInteger(r.version) || r.version < 1) {
    return "missing or invalid fields";
  }
  if (withLocation && typeof r.location !== "string") return "missing or invalid fields";
  return { id: r.id, encrypted: r.encrypted, version: r.version, ...(withLocation ? { location: r.location as string } : {}) };
}

export class KnownRepositories {
  /** What check() read, for record() to reuse (so a bad record is warned about once). */
  private last: { id: string; location: string; byId: Seen | null; byLocation: Seen | null } | null = null;

  constructor(
    /** $XDG_CACHE_HOME/coffer (knownDir). */
    readonly dir: string,
    private readonly warn: (message: string) => void,
    /** The directory relative locations were given from. */
    private readonly cwd: string,
  ) {}

  idFile(id: Uint8Array): string {
    return join(this.dir, "repositories", `${toHex(id)}.json`);
  }

  locationFile(location: string): string {
    return join(this.dir, "locations", `${createHash("sha256").update(locationKey(location, this.cwd), "utf8").digest("hex")}.json`);
  }

  private async read(file: string, withLocation: boolean, expect: (s: Seen) => boolean): Promise<Seen | null> {
    let text: string;
    try {
      text = await fsp.readFile(file, "utf8");
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === "ENOENT" || code === "ENOTDIR") return null;
      this.warn(`cannot read ${file} (${code ?? (e as Error).message}): ignoring it`);
      return null;
    }
    const s = parseSeen(text, withLocation);
    if (typeof s === "string" || !expect(s)) {
      this.warn(`ignoring ${file}: ${typeof s === "string" ? s : "it describes another repository or location"} (it is rewritten)`);
      return null;
    }
    return s;
  }

  private async seen(config: RepositoryConfig, location: string): Promise<{ byId: Seen | null; byLocation: Seen | null }> {
    const id = toHex(config.id);
    if (this.last !== null && this.last.id === id && this.last.location === location) return this.last;
    const key = locationKey(location, this.cwd);
    const [byId, byLocation] = await Promise.all([
      this.read(this.idFile(config.id), false, (s) => s.id === id),
      this.read(this.locationFile(location), true, (s) => s.location === key),
    ]);
    this.last = { id, location, byId, byLocation };
    return this.last;
  }

  /**
   * Refuses (CORRUPT) a configuration that contradicts what this client saw:
   * plaintext where the repository, or the repository at this location,
   * was encrypted; an older format version than the repository had.
   */
  async check(config: RepositoryConfig, location: string): Promise<void> {
    const { byId, byLocation } = await this.seen(config, location);
    const what = `repository configuration at ${location}`;
    const id = toHex(config.id).slice(0, 8);
    const reset = (file: string) => `if you replaced the repository on purpose, remove ${file}`;
    if (config.encryption === null) {
      if (byId?.encrypted) {
        throw new CorruptError(
          what,
          `it was altered or replaced: it says repository ${id} is not encrypted, but this client opened it encrypted before; coffer refuses it rather than write anything unencrypted (${reset(this.idFile(config.id))})`,
        );
      }
      if (byLocation?.encrypted) {
        throw new CorruptError(
          what,
          `it was altered or replaced: it says the repository (${id}) is not encrypted, but the repository this client last opened here (${byLocation.id.slice(0, 8)}) was encrypted; coffer refuses it rather than write anything unencrypted (${reset(this.locationFile(location))})`,
        );
      }
    }
    if (byId !== null && config.version < byId.version) {
      throw new CorruptError(
        what,
        `it was altered or replaced: it says repository ${id} has format version ${config.version}, but this client opened it at version ${byId.version} before (${reset(this.idFile(config.id))})`,
      );
    }
  }

  /** Records a repository opened (after check) or created at `location`; a failure is a warning. */
  async record(config: RepositoryConfig, location: string): Promise<void> {
    const { byId, byLocation } = await this.seen(config, location);
    const id = toHex(config.id);
    const encrypted = config.encryption !== null;
    const idRecord = { v: 1, id, encrypted: encrypted || byId?.encrypted === true, version: Math.max(config.version, byId?.version ?? 0) };
    const locRecord = { v: 1, location: locationKey(location, this.cwd), id, encrypted, version: config.version };
    const same = (s: Seen | null, r: Seen) => s !== null && s.id === r.id && s.encrypted === r.encrypted && s.version === r.version;
    if (!same(byId, idRecord)) await this.write(this.idFile(config.id), idRecord);
    if (!same(byLocation, locRecord)) await this.write(this.locationFile(location), locRecord);
  }

  private async write(file: string, record: object): Promise<void> {
    try {
      await writeCacheFile(file, `${JSON.stringify(record)}\n`);
    } catch (e) {
      this.warn(`cannot record the repository in ${file} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
    }
  }
}

/** Writes a file of the cache directory whole: to a temporary file beside it, then renamed into place (directories made 0700, the file 0600). */
export async function writeCacheFile(file: string, data: string | Uint8Array): Promise<void> {
  const dir = join(file, "..");
  const tmp = join(dir, `.${randomBytes(6).toString("hex")}.tmp`);
  try {
    await fsp.mkdir(dir, { recursive: true, mode: 0o700 });
    await fsp.writeFile(tmp, data, { mode: 0o600 });
    await fsp.rename(tmp, file);
  } catch (e) {
    await fsp.rm(tmp, { force: true }).catch(() => {});
    throw e;
  }
}
