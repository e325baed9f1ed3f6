/**
 * Plugin wire throughput: the shipped plugfs store plugin (dist/plugins,
 * served by the SDK) driven through the host adapter (PluginStore), against
 * the same store in process (FsStore). Puts and gets SIZE MiB as 32 MiB
 * objects (packfile-sized), three rounds, median.
 *
 *   npm run bench:plugins [-- --size 512]
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { arch, cpus, hostname, platform, tmpdir } from "node:os";
import { join } from "node:path";
import type { Store } from "../src/connectors/store.ts";
import { markdownTable, median } from "./report.ts";

// The built code (npm run build first), loaded by URL so that type-checking needs no dist/.
const dist = (p: string) => import(new URL(`../dist/${p}`, import.meta.url).href);
const { Resource } = (await dist("connectors/flags.js")) as typeof import("../src/connectors/flags.ts");
const { FsStore } = (await dist("connectors/fs/store.js")) as typeof import("../src/connectors/fs/store.ts");
const { PluginStore } = (await dist("connectors/plugin/store.js")) as typeof import("../src/connectors/plugin/store.ts");

const args = process.argv.slice(2);
const sizeMiB = Number(args[args.indexOf("--size") + 1] ?? 256) || 256;
const OBJECT = 32 << 20;
const count = Math.max(1, Math.round((sizeMiB << 20) / OBJECT));
const data = Array.from({ length: count }, () => new Uint8Array(randomBytes(OBJECT)));
const macs = data.map(() => new Uint8Array(randomBytes(32)));
const opts = { hostname: hostname(), os: platform(), arch: arch(), cwd: process.cwd(), maxConcurrency: 8, excludes: [], noXattr: false };

interface Timed {
  put: number;
  get: number;
}

async function run(store: Store): Promise<Timed> {
  await store.create(new Uint8Array([1]));
  const t0 = performance.now();
  for (let i = 0; i < count; i++) await store.put(Resource.PACKFILE, macs[i]!, data[i]!);
  const t1 = performance.now();
  for (let i = 0; i < count; i++) await store.get(Resource.PACKFILE, macs[i]!);
  const t2 = performance.now();
  await store.close();
  const mib = (count * OBJECT) / (1 << 20);
  return { put: mib / ((t1 - t0) / 1000), get: mib / ((t2 - t1) / 1000) };
}

const rows: { name: string; put: number[]; get: number[] }[] = [
  { name: "FsStore in process", put: [], get: [] },
  { name: "plugfs plugin over gRPC (stdio)", put: [], get: [] },
];
for (let round = 0; round < 3; round++) {
  for (const row of rows) {
    const dir = mkdtempSync(join(tmpdir(), "coffer-bench-plugins-"));
    try {
      const store =
        row === rows[0]
          ? new FsStore(join(dir, "repo"))
          : await PluginStore.start({ name: "plugfs", executable: join(import.meta.dirname, "..", "dist", "plugins", "plugfs", "storage.js") }, "plugfs", { location: `plugfs:${join(dir, "repo")}` }, opts);
      const t = await run(store);
      row.put.push(t.put);
      row.get.push(t.get);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
}
console.log(`${count * 32} MiB as ${count} x 32 MiB objects, median of 3; ${cpus().length} CPUs (${cpus()[0]?.model ?? "?"}), Node ${process.version}`);
const cell = (xs: number[]): string => median(xs)?.toFixed(0) ?? "—";
console.log(markdownTable(["store", "put MiB/s", "get MiB/s"], ["left", "right", "right"], rows.map((r) => [r.name, cell(r.put), cell(r.get)])).join("\n"));
