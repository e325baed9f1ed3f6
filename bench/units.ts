// Sizes and the two number formats every bench module logs and reports with.

export const KiB = 1024;
export const MiB = 1024 * KiB;
export const GiB = 1024 * MiB;

/** Seconds with three significant figures or so: 1.23, 12.3, 123. */
export function fmtSecs(s: number): string {
  return s < 10 ? s.toFixed(2) : s < 100 ? s.toFixed(1) : s.toFixed(0);
}

/** Bytes as MiB, in the same three-figure style. */
export function fmtMiB(b: number): string {
  const m = b / MiB;
  return m < 10 ? m.toFixed(2) : m < 100 ? m.toFixed(1) : m.toFixed(0);
}
