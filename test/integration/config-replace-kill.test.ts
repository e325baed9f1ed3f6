/**
 * Store.replaceConfig against a dying writer, on the fs and ptar stores:
 * a process replacing the configuration over and over
 * (test/fixtures/config-replacer.ts) is SIGKILLed at moments of all kinds,
 * inside replacements too. After each kill the configuration is whole, one
 * the writer wrote or was writing, never older than the last it reported;
 * and a new writer takes over what the dead one left (fs: its
 * tmp/config.replacing lock, ptar: its commit lock) and replaces it.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { promises as fsp } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { FsStore } from "../../src/connectors/fs/store.js";
import { PtarStore } from "../../src/connectors/ptar/store.js";
import type { Store } from "../../src/connectors/store.js";

const REPLACER = fileURLToPath(new URL("../fixtures/config-replacer.ts", import.meta.url));
/** Large enough that a replacement takes a while: kills land inside them. */
const SIZE = 4 * 1024 * 1024;

const base = await fsp.mkdtemp(path.join(tmpdir(), "coffer-config-kill-"));
const running = new Set<ChildProcess>();
afterAll(async () => {
  for (const c of running) c.kill("SIGKILL");
  await fsp.rm(base, { recursive: true, force: true });
});

/** Configuration n of the fixture's sequence. */
function configBytes(n: number): Uint8Array {
  const b = Buffer.alloc(SIZE, n % 251);
  b.writeUInt32LE(n, 0);
  return new Uint8Array(b);
}

/** The n of a configuration of the sequence; fails on anything else (a torn or mixed write). */
function sequenceNumber(config: Uint8Array): number {
  expect(config.byteLength).toBe(SIZE);
  const n = Buffer.from(config).readUInt32LE(0);
  expect(Buffer.from(config).equals(Buffer.from(configBytes(n))), `configuration ${n} is whole`).toBe(true);
  return n;
}

/** Starts the fixture; resolves with its exit once killed, and the numbers it reported. */
function replacer(kind: "fs" | "ptar", location: string) {
  const child = spawn(process.execPath, ["--experimental-transform-types", "--no-warnings", REPLACER, kind, location], { stdio: ["ignore", "pipe", "pipe"] });
  running.add(child);
  const reported: number[] = [];
  let stderr = "";
  let firstReport: () => void;
  const first = new Promise<void>((r) => (firstReport = r));
  let out = "";
  child.stdout.setEncoding("utf8").on("data", (d: string) => {
    out += d;
    for (let nl = out.indexOf("\n"); nl >= 0; nl = out.indexOf("\n")) {
      reported.push(Number(out.slice(0, nl).split(" ")[1]));
      out = out.slice(nl + 1);
      firstReport();
    }
  });
  child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
  const exited = new Promise<NodeJS.Signals | null>((resolve) =>
    child.on("exit", (_code, signal) => {
      running.delete(child);
      resolve(signal);
    }),
  );
  const started = Promise.race([first, exited.then(() => Promise.reject(new Error(`the replacer exited: ${stderr}`)))]);
  return { child, reported, started, exited, stderr: () => stderr };
}

const stores: Record<"fs" | "ptar", (location: string, readOnly?: boolean) => Store> = {
  fs: (l, readOnly = false) => new FsStore(l, { readOnly }),
  ptar: (l, readOnly = false) => new PtarStore(l, { readOnly, lockWaitMs: 2000 }),
};

describe("replaceConfig killed at any moment", () => {
  for (const kind of ["fs", "ptar"] as const) {
    it(`${kind}: the configuration is whole and as new as reported; the next writer takes over`, async () => {
      const location = path.join(base, kind === "fs" ? "repo" : "repo.ptar");
      const made = stores[kind](location);
      await made.create(configBytes(0));
      await made.close();
      let acknowledged = 0;
      for (const delayMs of [0, 10, 25, 40, 60, 90, 130]) {
        const r = replacer(kind, location);
        await r.started;
        await new Promise((res) => setTimeout(res, delayMs + Math.random() * 15));
        r.child.kill("SIGKILL");
        expect(await r.exited, r.stderr()).toBe("SIGKILL");
        acknowledged = Math.max(acknowledged, ...r.reported);
        const ro = stores[kind](location, true);
        // The one it reported last, or the one it was writing when killed.
        expect(sequenceNumber(await ro.open())).toBeGreaterThanOrEqual(acknowledged);
        await ro.close();
      }
      const next = stores[kind](location);
      const current = await next.open();
      const n = sequenceNumber(current);
      await next.replaceConfig!(configBytes(n + 1), current);
      await next.close();
      const ro = stores[kind](location, true);
      expect(sequenceNumber(await ro.open())).toBe(n + 1);
      await ro.close();
      if (kind === "fs") expect(await fsp.readdir(path.join(location, "tmp"))).not.toContain("config.replacing");
      else expect(await fsp.readdir(base)).not.toContain("repo.ptar.lock");
    });
  }
});
