/**
 * Passphrases are bytes (docs/CLI.md, "Passphrase"): what argon2id gets is
 * exactly a keyfile's bytes (less one trailing "\n" or "\r\n") or
 * COFFER_PASSPHRASE's bytes, never a lossy decoding of them. Node decodes
 * the environment as UTF-8 and turns every byte that is not part of valid
 * UTF-8 into U+FFFD, so two different passphrases could open the same
 * repository; when the decoded value holds U+FFFD the original bytes are read
 * back from /proc/self/environ (Linux: the environment the process started
 * with; bin/coffer.js does not re-execute itself when that would rewrite
 * them, see src/cli/launch.ts), and without them the passphrase is refused.
 */
import { readFileSync } from "node:fs";
import { CofferError } from "../util/errors.js";

export const PASSPHRASE_VAR = "COFFER_PASSPHRASE";
/** Where `coffer key add|passwd` take the new passphrase from, unless given a file. */
export const NEW_PASSPHRASE_VAR = "COFFER_NEW_PASSPHRASE";
/** `sync`'s other repository's passphrase, read the same way (its file: --other-passphrase-file). */
export const OTHER_PASSPHRASE_VAR = "COFFER_OTHER_PASSPHRASE";

/** A keyfile's passphrase: its bytes less one trailing "\n" or "\r\n". */
export function keyfilePassphrase(bytes: Uint8Array): Uint8Array {
  let n = bytes.byteLength;
  if (n > 0 && bytes[n - 1] === 0x0a) {
    n--;
    if (n > 0 && bytes[n - 1] === 0x0d) n--;
  }
  return bytes.subarray(0, n);
}

/** The value of the first `name=` entry of an environment block (entries separated by NUL bytes), or null. */
export function environValue(environ: Uint8Array, name: string): Uint8Array | null {
  const b = Buffer.from(environ.buffer, environ.byteOffset, environ.byteLength);
  const prefix = Buffer.from(`${name}=`, "utf8");
  let at = 0;
  while (at < b.byteLength) {
    let end = b.indexOf(0, at);
    if (end < 0) end = b.byteLength;
    if (end - at >= prefix.byteLength && b.subarray(at, at + prefix.byteLength).equals(prefix)) {
      return new Uint8Array(b.subarray(at + prefix.byteLength, end));
    }
    at = end + 1;
  }
  return null;
}

/** The environment this process started with, as bytes, where the system shows it (Linux); else null. */
export function processEnviron(): Uint8Array | null {
  try {
    return new Uint8Array(readFileSync("/proc/self/environ"));
  } catch {
    return null;
  }
}

/**
 * The passphrase of COFFER_PASSPHRASE's (or `name`'s) decoded `value` (null
 * when unset or empty): its UTF-8 when it decoded without loss (no U+FFFD),
 * else the variable's original bytes from `environ` if they decode to
 * `value`. Throws USAGE when those bytes cannot be had, naming `fileOption`.
 */
export function envPassphrase(
  value: string | undefined,
  environ: () => Uint8Array | null = processEnviron,
  name = PASSPHRASE_VAR,
  fileOption = "--keyfile",
): Uint8Array | null {
  if (value === undefined || value === "") return null;
  if (!value.includes("\uFFFD")) return new Uint8Array(Buffer.from(value, "utf8"));
  const env = environ();
  const raw = env === null ? null : environValue(env, name);
  if (raw !== null && raw.byteLength > 0 && Buffer.from(raw).toString("utf8") === value) return raw;
  throw new CofferError(
    "USAGE",
    `${name} is not valid UTF-8 and coffer cannot read its bytes on this system (they would turn into U+FFFD, and other passphrases with it): put the passphrase in a file and give ${fileOption} FILE`,
  );
}
