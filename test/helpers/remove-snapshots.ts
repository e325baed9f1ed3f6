/**
 * Removes snapshots the way `coffer rm` will (a `removed` record each,
 * under a shared lock, through the Repository API), for the tests of
 * `maintenance` until `rm` exists: switching them to `coffer rm ID...` is a
 * one-line change here.
 */
import type { Store } from "../../src/connectors/store.js";
import { Repository } from "../../src/repository/repository.js";
import { fromHex } from "../../src/util/hex.js";

/** Writes a `removed` record for each snapshot ID (hex, whole) in the repository on `store`. */
export async function removeSnapshots(store: Store, passphrase: string | null, ids: readonly string[], timeMs = Date.now()): Promise<void> {
  const repo = await Repository.open(store, { passphrase: async () => passphrase });
  try {
    await repo.acquire("shared", "rm (test)");
    await repo.removeSnapshots(ids.map((id) => ({ snapshot: fromHex(id), why: "removed by a test", timeMs })));
  } finally {
    await repo.close();
  }
}
