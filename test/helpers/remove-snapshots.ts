/**
 * Removes snapshots as `coffer rm ID...` does (src/snapshot/removal.ts: one
 * delta of `removed` records under a shared lock), on a store the test
 * holds, for tests that drive the Repository API.
 */
import type { Store } from "../../src/connectors/store.js";
import { Repository } from "../../src/repository/repository.js";
import { removeSnapshots as remove } from "../../src/snapshot/removal.js";
import { fromHex } from "../../src/util/hex.js";

/** Removes each snapshot (ID in hex, whole) of the repository on `store`. */
export async function removeSnapshots(store: Store, passphrase: string | null, ids: readonly string[]): Promise<void> {
  const repo = await Repository.open(store, { passphrase: async () => passphrase });
  try {
    await remove(repo, ids.map((id) => ({ id: fromHex(id), why: "rm: test" })), { command: "rm" });
  } finally {
    await repo.close();
  }
}
