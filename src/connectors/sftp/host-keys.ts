/**
 * Host-key checking as OpenSSH does it: the key the server shows must be
 * one known_hosts lists for `[host]:port` (or `host` on port 22; plain,
 * wildcard and hashed `|1|` patterns, `!` negations; `@revoked` keys are
 * refused, `@cert-authority` lines ignored), or the pinned fingerprint. An
 * unknown host and a mismatch are errors naming the host and both sides'
 * fingerprints.
 */
import { createHash, createHmac } from "node:crypto";
import { promises as fsp } from "node:fs";
import { CofferError } from "../../util/errors.js";
import type { SftpSettings } from "./params.js";

interface KnownKey {
  type: string;
  blob: Buffer;
  revoked: boolean;
}

/** A key's fingerprint as ssh-keygen -l prints it: SHA256:base64, unpadded. */
function fingerprintOf(blob: Buffer): string {
  return `SHA256:${createHash("sha256").update(blob).digest("base64").replace(/=+$/, "")}`;
}

/** The name known_hosts gives the host: `host`, or `[host]:port` off port 22. */
function hostName(host: string, port: number): string {
  return port === 22 ? host : `[${host}]:${port}`;
}

function globMatch(pattern: string, name: string): boolean {
  const re = pattern.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".");
  return new RegExp(`^${re}$`, "i").test(name);
}

function hashedMatch(entry: string, name: string): boolean {
  const [, kind, salt, hash] = entry.split("|");
  if (kind !== "1" || salt === undefined || hash === undefined) return false;
  return createHmac("sha1", Buffer.from(salt, "base64")).update(name).digest("base64") === hash;
}

function patternsMatch(field: string, name: string): boolean {
  if (field.startsWith("|")) return hashedMatch(field, name);
  let matched = false;
  for (const p of field.split(",")) {
    if (p.startsWith("!")) {
      if (globMatch(p.slice(1), name)) return false;
    } else if (globMatch(p, name)) matched = true;
  }
  return matched;
}

/** The keys `text` (a known_hosts file) lists for the host. */
function knownKeys(text: string, host: string, port: number): KnownKey[] {
  const name = hostName(host, port);
  const out: KnownKey[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const fields = line.split(/\s+/);
    let revoked = false;
    if (fields[0]!.startsWith("@")) {
      const marker = fields.shift()!;
      if (marker === "@cert-authority") continue;
      revoked = marker === "@revoked";
    }
    const [patterns, type, b64] = fields;
    if (patterns === undefined || type === undefined || b64 === undefined) continue;
    if (!patternsMatch(patterns, name)) continue;
    out.push({ type, blob: Buffer.from(b64, "base64"), revoked });
  }
  return out;
}

/** The key types to ask the server for first: those known_hosts has for it (RSA under its SHA-2 signature names too). */
function preferredKeyTypes(known: readonly KnownKey[]): string[] {
  const types = new Set<string>();
  for (const k of known) {
    if (k.revoked) continue;
    if (k.type === "ssh-rsa") ["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"].forEach((t) => types.add(t));
    else types.add(k.type);
  }
  return [...types];
}

/** A check of the server's key: what to ask for, and the verdict on the key it shows. */
export interface HostKeyCheck {
  /** Host-key algorithms to offer, when known_hosts narrows them (undefined: ssh2's defaults). */
  algorithms: string[] | undefined;
  /** Undefined when the key is accepted; otherwise the error to fail with. */
  verdict(blob: Buffer): CofferError | undefined;
}

export async function hostKeyCheck(s: SftpSettings): Promise<HostKeyCheck> {
  const rule = s.hostKey;
  const host = hostName(s.host, s.port);
  if (rule.kind === "ignore") return { algorithms: undefined, verdict: () => undefined };
  if (rule.kind === "fingerprint") {
    return {
      algorithms: undefined,
      verdict: (blob) => {
        const seen = fingerprintOf(blob);
        if (seen === rule.fingerprint) return undefined;
        return new CofferError("IO", `${s.where}: host key mismatch for ${host}: the server shows ${seen}, host_key_fingerprint expects ${rule.fingerprint}`, { host, seen, expected: [rule.fingerprint] });
      },
    };
  }
  let text = "";
  try {
    text = await fsp.readFile(rule.file, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") {
      throw new CofferError("IO", `${s.where}: cannot read known_hosts ${rule.file}: ${(e as Error).message}`, { path: rule.file });
    }
  }
  const known = knownKeys(text, s.host, s.port);
  const types = preferredKeyTypes(known);
  return {
    algorithms: types.length > 0 ? types : undefined,
    verdict: (blob) => {
      const seen = fingerprintOf(blob);
      const matches = known.filter((k) => k.blob.equals(blob));
      if (matches.some((k) => k.revoked)) return new CofferError("IO", `${s.where}: the host key of ${host} (${seen}) is marked @revoked in ${rule.file}`, { host, seen });
      if (matches.length > 0) return undefined;
      const expected = known.filter((k) => !k.revoked).map((k) => fingerprintOf(k.blob));
      if (expected.length === 0) {
        return new CofferError(
          "IO",
          `${s.where}: unknown host ${host}: its key ${seen} is not in ${rule.file} (add it there after checking it, e.g. with ssh-keyscan, or give -o host_key_fingerprint=${seen} if that is the host's key)`,
          { host, seen, expected },
        );
      }
      return new CofferError("IO", `${s.where}: host key mismatch for ${host}: the server shows ${seen}, ${rule.file} expects ${expected.join(" or ")} (someone may be intercepting the connection, or the host's key changed)`, {
        host,
        seen,
        expected,
      });
    },
  };
}
