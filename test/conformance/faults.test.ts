/**
 * The Store conformance suite on the fault kit's decorators
 * (test/helpers/faults.ts) with no fault armed: each must keep the whole
 * contract of the store it wraps, or tests built on them would be testing
 * the decorator. eventuallyConsistent runs settled before each listing
 * (its listings then differ from the store's in order only), so that the
 * suite's list checks apply to it.
 */
import { promises as fsp } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { FsStore } from "../../src/connectors/fs/store.js";
import { MemoryStore } from "../../src/connectors/memory/store.js";
import type { Store } from "../../src/connectors/store.js";
import { cutShort, delayed, eventuallyConsistent, failing, gate, recording } from "../helpers/faults.js";
import { storeConformance } from "./store.js";

/** A fixture of `wrap` around a fresh MemoryStore (and around its read-only view). */
function onMemory(wrap: (s: Store) => Store) {
  return async () => {
    const mem = new MemoryStore();
    return { store: wrap(mem), readOnly: async () => wrap(mem.view({ readOnly: true })), cleanup: async () => {} };
  };
}

/** eventuallyConsistent, settled before each of its listings. */
function settledLists(seed: number, lingeringDeletes = false) {
  return (s: Store): Store => {
    const ec = eventuallyConsistent(s, { seed, lingeringDeletes });
    return delayed(ec, () => ec.settle(), { op: "list" });
  };
}

const opened = () => {
  const g = gate();
  g.open();
  return g;
};

storeConformance("recording(memory)", onMemory((s) => recording(s)), { replaceConfig: true });
storeConformance("failing(memory), no fault armed", onMemory((s) => failing(s, { times: 0 })), { replaceConfig: true });
storeConformance("eventuallyConsistent(memory), settled before each listing", onMemory(settledLists(42)), { replaceConfig: true });
storeConformance("eventuallyConsistent(memory) with lingering deletes, settled before each listing", onMemory(settledLists(7, true)), { replaceConfig: true });

// Every decorator at once, over the fs store (whose stage() they pass on).
storeConformance("recording(delayed(failing(cutShort(settled eventuallyConsistent(fs)))))", async () => {
  const root = await fsp.mkdtemp(path.join(tmpdir(), "coffer-faults-conf-"));
  const inner: FsStore[] = [];
  const wrap = (fs: FsStore): Store => {
    inner.push(fs);
    return recording(delayed(failing(cutShort(settledLists(3)(fs), { nth: Infinity }), { times: 0 }), opened()));
  };
  return {
    store: wrap(new FsStore(root)),
    readOnly: async () => wrap(new FsStore(root, { readOnly: true })),
    cleanup: async () => {
      await Promise.all(inner.map((s) => s.close()));
      await fsp.rm(root, { recursive: true, force: true });
    },
  };
}, { replaceConfig: true, stage: true });
