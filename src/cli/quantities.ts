/** Sizes and durations as options take them (docs/CLI.md, "Sizes and durations"). */
import { CofferError } from "../util/errors.js";

const SIZE_UNITS: Record<string, number> = { "": 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 };

/** `SIZE`: bytes, or a number with K, M, G or T (powers of 1024; `KiB`, `MB`... also read so), e.g. `500M`, `2.5G`. */
export function parseSize(s: string, option: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?$/i.exec(s.trim());
  const n = m ? Math.floor(Number(m[1]) * SIZE_UNITS[m[2]!.toLowerCase()]!) : NaN;
  if (!Number.isSafeInteger(n)) throw new CofferError("USAGE", `${option}: not a size: ${JSON.stringify(s)} (bytes, or a number with K, M, G or T: 500M, 2G)`);
  return n;
}

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3600_000, d: 86_400_000 };

/** `DURATION`: `0`, or numbers each with a unit (ms, s, m, h, d), e.g. `90s`, `1h30m`, `2.5h`: in ms. */
export function parseDuration(s: string, option: string): number {
  const bad = () => new CofferError("USAGE", `${option}: not a duration: ${JSON.stringify(s)} (0, or a number with ms, s, m, h or d: 30m, 1h30m)`);
  const t = s.trim();
  if (t === "0") return 0;
  if (!/^(\d+(\.\d+)?(ms|s|m|h|d))+$/.test(t)) throw bad();
  let ms = 0;
  for (const [, n, , unit] of t.matchAll(/(\d+(\.\d+)?)(ms|s|m|h|d)/g)) ms += Number(n) * DURATION_UNITS[unit!]!;
  if (!Number.isFinite(ms) || ms > Number.MAX_SAFE_INTEGER) throw bad();
  return Math.round(ms);
}
