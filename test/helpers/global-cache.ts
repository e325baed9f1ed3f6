/**
 * Vitest global setup: one temporary XDG_CACHE_HOME for the whole run
 * (test/helpers/cli.ts gives it to every CLI child), removed at the end.
 * Test processes inherit it through COFFER_TEST_CACHE_HOME; they may be
 * ended without an exit event, so they do not remove anything themselves.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";

export function setup(): () => void {
  const dir = mkdtempSync(path.join(tmpdir(), "coffer-test-cache-"));
  process.env.COFFER_TEST_CACHE_HOME = dir;
  return () => rmSync(dir, { recursive: true, force: true });
}
