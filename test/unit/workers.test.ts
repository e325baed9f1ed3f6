/**
 * Errors across worker threads (src/snapshot/worker-errors.ts): what a
 * worker posts (toWorkerError) survives structured cloning, as postMessage
 * does it, and comes back (fromWorkerError) as the same class with its
 * code, detail and data; an error thrown out of a worker reaches
 * startWorkers' onFail (src/snapshot/workers.ts) as its class again.
 */
import { openSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { fromWorkerError, toWorkerError } from "../../src/snapshot/worker-errors.js";
import { startWorkers } from "../../src/snapshot/workers.js";
import { CofferError, CorruptError, NotFoundError } from "../../src/util/errors.js";

/** What the main thread makes of `e` posted by a worker. */
const across = (e: unknown) => fromWorkerError(structuredClone(toWorkerError(e)));

describe("errors posted by workers", () => {
  it("a CorruptError comes back a CorruptError with its message, detail and data", () => {
    const e = new CorruptError("chunk blob 0123456789abcdef", "authentication failed", { type: 1, mac: "0123456789abcdef".repeat(4), pack: "ab".repeat(32) });
    const back = across(e);
    expect(back).toBeInstanceOf(CorruptError);
    expect(back).toMatchObject({ code: "CORRUPT", message: e.message, detail: "authentication failed", data: e.data });
    expect(back.stack).toBe(e.stack);
  });

  it("a NotFoundError and a CofferError keep their class, code and data", () => {
    const nf = across(new NotFoundError("packfile ab12", { mac: "ab12" }));
    expect(nf).toBeInstanceOf(NotFoundError);
    expect(nf).toMatchObject({ code: "NOT_FOUND", message: "packfile ab12: not found", data: { mac: "ab12" } });
    const io = across(new CofferError("IO", "disk on fire", { errno: "EIO" }));
    expect(io).toBeInstanceOf(CofferError);
    expect(io).toMatchObject({ code: "IO", message: "disk on fire", data: { errno: "EIO" } });
  });

  it("a system error keeps its message and errno fields", () => {
    let thrown: unknown;
    try {
      openSync("/nonexistent/coffer-test", "r");
    } catch (e) {
      thrown = e;
    }
    const back = across(thrown) as NodeJS.ErrnoException;
    expect(back).not.toBeInstanceOf(CofferError);
    expect(back).toMatchObject({ message: (thrown as Error).message, code: "ENOENT", syscall: "open", path: "/nonexistent/coffer-test" });
    expect(back.errno).toBe((thrown as NodeJS.ErrnoException).errno);
  });

  it("data that cannot be cloned is left out, the rest kept; a thrown non-Error becomes its text", () => {
    const back = across(new CofferError("IO", "x", { errno: "EIO", retry: () => 1 }));
    expect((back as CofferError).data).toEqual({ errno: "EIO" });
    expect(across("plain text")).toMatchObject({ message: "plain text" });
  });
});

describe("startWorkers", () => {
  it("hands an error thrown out of a worker to onFail as its class again", async () => {
    // The worker posts that it is ready, then throws a CorruptError's fields (as Node clones an uncaught error: own fields, no class).
    const src = `
      import { parentPort } from "node:worker_threads";
      parentPort.postMessage("ready");
      parentPort.on("message", () => {
        const e = new Error("chunk at 0: authentication failed");
        Object.assign(e, { name: "CorruptError", code: "CORRUPT", detail: "authentication failed", data: { type: 1, mac: "ab" } });
        throw e;
      });`;
    const url = new URL(`data:text/javascript,${encodeURIComponent(src)}`);
    let fail!: (e: Error) => void;
    const failed = new Promise<Error>((r) => (fail = r));
    const [w] = await startWorkers(url, 1, () => null, () => {}, fail);
    try {
      w!.postMessage("go");
      const e = await failed;
      expect(e).toBeInstanceOf(CorruptError);
      expect(e).toMatchObject({ code: "CORRUPT", message: "chunk at 0: authentication failed", detail: "authentication failed", data: { type: 1, mac: "ab" } });
    } finally {
      await w!.terminate();
    }
  });
});
