/** Runs the Store conformance suite against the in-memory store. */
import { MemoryStore } from "../../src/connectors/memory/store.js";
import { storeConformance } from "./store.js";

storeConformance("memory", async () => {
  const store = new MemoryStore();
  return {
    store,
    readOnly: async () => store.view({ readOnly: true }),
    cleanup: async () => {},
  };
}, { replaceConfig: true });
