/**
 * The kits' harness on vitest, for coffer's own conformance tests.
 *
 * `knownFailures` maps a check's exact title to why a built-in connector
 * fails it today: that check runs as vitest's `it.fails`, so it passes only
 * while the connector still fails it (and turns red once fixed, so that the
 * entry is removed). Nothing is skipped.
 */
import { afterEach, describe, it } from "vitest";
import type { Harness } from "../../src/sdk/kits/index.js";

export function vitestHarness(knownFailures: Readonly<Record<string, string>> = {}): Harness {
  return {
    describe,
    afterEach,
    it(name, fn, timeoutMs) {
      const why = knownFailures[name];
      if (why === undefined) it(name, fn, timeoutMs);
      else it.fails(`${name} [known failure: ${why}]`, fn, timeoutMs);
    },
  };
}
