/**
 * The Store conformance suite, for coffer's own tests: the checks live in
 * the SDK (src/sdk/kits/store.ts) so that store plugins run the same ones;
 * this runs them on vitest. Every store runs it from a few lines:
 *
 *   storeConformance("fs", async () => ({ store, readOnly, cleanup }));
 */
import { afterEach, describe, it } from "vitest";
import { storeKit } from "../../src/sdk/kits/index.js";
import type { StoreFixture, StoreKitOptions } from "../../src/sdk/kits/index.js";

export type { StoreFixture };

export function storeConformance(name: string, make: () => Promise<StoreFixture>, opts: StoreKitOptions = {}): void {
  storeKit({ describe, it, afterEach }, name, make, opts);
}
