/**
 * Conformance kits for connector authors: run the checks coffer's built-in
 * connectors pass on your store, importer or exporter, from your own test
 * file, with vitest or node:test:
 *
 *   import { afterEach, describe, it } from "vitest"; // or "node:test"
 *   import { importerKit } from "coffer/sdk";
 *   importerKit({ describe, it, afterEach }, "myproto", async () => ({ importer, expected, cleanup }));
 *
 * See each kit's file for what it checks and what its fixture provides.
 */
export type { ExpectedEntry, Harness, KitOptions } from "./harness.js";
export { storeKit } from "./store.js";
export type { StoreFixture, StoreKitOptions } from "./store.js";
export { importerKit, ResultChannel } from "./importer.js";
export type { ImporterFixture, ImporterKitOptions } from "./importer.js";
export { exporterKit } from "./exporter.js";
export type { ExporterFixture, ExporterKitOptions, ExporterSupports, ContentOnly } from "./exporter.js";
