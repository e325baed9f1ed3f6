/** Time conversions. */

/** Seconds since the epoch as Node's time arguments take them (~0.25 µs resolution today). */
export function nsToSeconds(ns: bigint): number {
  return Number(ns / 1_000_000_000n) + Number(ns % 1_000_000_000n) / 1e9;
}
