/**
 * Both ends of the wire together: the conformance kits (src/sdk/kits) on
 * coffer's plugin host adapters (src/connectors/plugin) driving the plugfs
 * example plugins built with the SDK (dist/plugins/plugfs, from
 * `npm run build`). What the core relies on from any store, importer and
 * exporter holds across a coffer host and a coffer SDK plugin.
 */
import { createHash, randomBytes } from "node:crypto";
import { spawnSync } from "node:child_process";
import { existsSync, promises as fsp } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll } from "vitest";
import { PluginExporter } from "../../src/connectors/plugin/exporter.js";
import { PluginImporter } from "../../src/connectors/plugin/importer.js";
import { PluginStore } from "../../src/connectors/plugin/store.js";
import type { ConnectorOptions } from "../../src/connectors/records.js";
import { exporterKit, importerKit, storeKit } from "../../src/sdk/kits/index.js";
import type { ExpectedEntry } from "../../src/sdk/kits/index.js";
import { vitestHarness } from "../conformance/harness.js";
import { readTree } from "../conformance/read-tree.js";

const PLUGFS = (name: string) => fileURLToPath(new URL(`../../dist/plugins/plugfs/${name}.js`, import.meta.url));
const OPTIONS: ConnectorOptions = { hostname: "testhost", os: "linux", arch: "x64", cwd: "/", maxConcurrency: 4, excludes: [], noXattr: false };
const spec = (name: string) => ({ name: `plugfs-${name}`, executable: PLUGFS(name), onStderr: () => {} });

let base: string;
beforeAll(async () => {
  if (!existsSync(PLUGFS("importer"))) throw new Error("dist/plugins/plugfs is missing: run `npm run build` first");
  base = await fsp.mkdtemp(join(tmpdir(), "coffer-sdk-interop-"));
});
afterAll(async () => {
  await fsp.rm(base, { recursive: true, force: true });
});

const h = vitestHarness();

storeKit(h, "plugfs storage plugin", async () => {
  const dir = await fsp.mkdtemp(join(base, "store-"));
  const store = await PluginStore.start(spec("storage"), "plugfs", { location: `plugfs:${dir}/repo` }, OPTIONS);
  const readOnly: PluginStore[] = [];
  return {
    store,
    readOnly: async () => {
      const ro = await PluginStore.start(spec("storage"), "plugfs", { location: `plugfs:${dir}/repo`, read_only: "true" }, { ...OPTIONS, readOnly: true });
      readOnly.push(ro);
      return ro;
    },
    cleanup: async () => {
      await Promise.all([store, ...readOnly].map((s) => s.close()));
      await fsp.rm(dir, { recursive: true, force: true });
    },
  };
});

importerKit(h, "plugfs importer plugin", async () => {
  const root = await fsp.mkdtemp(join(base, "src-"));
  await fsp.chmod(root, 0o755);
  const expected: ExpectedEntry[] = [{ pathname: "/", kind: "dir", mode: 0o755 }];
  await fsp.mkdir(join(root, "dir"));
  await fsp.chmod(join(root, "dir"), 0o750);
  expected.push({ pathname: "/dir", kind: "dir", mode: 0o750 });
  await fsp.writeFile(join(root, "dir", "small.txt"), "small\n");
  await fsp.chmod(join(root, "dir", "small.txt"), 0o640);
  expected.push({ pathname: "/dir/small.txt", kind: "file", content: "small\n", mode: 0o640 });
  const big = randomBytes(5 * 1024 * 1024 + 17);
  await fsp.writeFile(join(root, "big.bin"), big);
  expected.push({ pathname: "/big.bin", kind: "file", size: big.byteLength, sha256: createHash("sha256").update(big).digest("hex") });
  await fsp.writeFile(join(root, "empty"), "");
  expected.push({ pathname: "/empty", kind: "file", content: "" });
  await fsp.symlink("dir/small.txt", join(root, "link"));
  expected.push({ pathname: "/link", kind: "symlink", target: "dir/small.txt" });
  spawnSync("mkfifo", ["-m", "640", join(root, "fifo")]);
  expected.push({ pathname: "/fifo", kind: "fifo", mode: 0o640 });
  await fsp.writeFile(join(root, "mtime.txt"), "exact time\n");
  spawnSync("touch", ["-m", "-d", "@1577934245.123456789", join(root, "mtime.txt")]);
  expected.push({ pathname: "/mtime.txt", kind: "file", content: "exact time\n", mtimeNs: 1577934245123456789n });
  const importer = await PluginImporter.start(spec("importer"), "plugfs", { location: `plugfs://${root}` }, OPTIONS);
  return {
    importer,
    expected,
    cleanup: async () => {
      await importer.close();
      await fsp.rm(root, { recursive: true, force: true });
    },
  };
});

exporterKit(h, "plugfs exporter plugin", async () => {
  const dir = await fsp.mkdtemp(join(base, "export-"));
  const target = join(dir, "target");
  const exporter = await PluginExporter.start(spec("exporter"), "plugfs", { location: `plugfs:${target}` }, OPTIONS);
  return {
    exporter,
    supports: { symlinks: true, hardlinks: true, fifos: true },
    readBack: () => readTree(target),
    escaped: async () => (await fsp.readdir(dir)).filter((n) => n !== "target").map((n) => join(dir, n)),
    cleanup: async () => {
      await exporter.close();
      await fsp.rm(dir, { recursive: true, force: true });
    },
  };
});
