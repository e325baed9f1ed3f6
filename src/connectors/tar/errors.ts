/** The errors the tar importer gives: the archive's damage, a failed read of its input, an import closed under it. */
import { CofferError } from "../../util/errors.js";
import type { TarDamage } from "./reader.js";

export function damageError(archive: string, d: TarDamage): CofferError {
  return new CofferError("CORRUPT", `${archive}: damaged tar archive: ${d.message}`, { path: archive });
}

export function closedError(): CofferError {
  return new CofferError("INTERRUPTED", "the tar importer was closed");
}

export function inputError(archive: string, e: unknown): CofferError {
  if (e instanceof CofferError) return e;
  const err = e as NodeJS.ErrnoException;
  if (err?.name === "AbortError") return new CofferError("INTERRUPTED", "interrupted");
  const code = typeof err?.code === "string" ? err.code : "";
  if (code.startsWith("Z_")) return new CofferError("CORRUPT", `${archive}: not a valid gzip stream: ${errorText(e)}`, { path: archive }, { cause: e });
  if (err?.syscall !== undefined) return new CofferError("IO", `cannot read ${archive}: ${errorText(e)}`, { path: archive }, { cause: e });
  return new CofferError("CORRUPT", `${archive}: damaged tar archive: ${errorText(e)}`, { path: archive }, { cause: e });
}

export function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

