/**
 * The conformance kits (src/sdk/kits) on the plugin adapters, over the raw
 * test plugins (test/fixtures/plugins, written directly on grpc-js): what
 * the core relies on from any connector holds across the process boundary.
 * Every fixture is a fresh plugin process; cleanup closes it.
 */
import { promises as fsp } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll } from "vitest";
import { kindOf } from "../../src/connectors/fs/importer.js";
import { PluginExporter } from "../../src/connectors/plugin/exporter.js";
import { PluginImporter } from "../../src/connectors/plugin/importer.js";
import { PluginStore } from "../../src/connectors/plugin/store.js";
import type { ConnectorOptions, Xattr } from "../../src/connectors/records.js";
import { exporterKit, importerKit, storeKit } from "../../src/sdk/kits/index.js";
import type { ExpectedEntry } from "../../src/sdk/kits/index.js";
import { vitestHarness } from "../conformance/harness.js";
import { MTIME_NS, TREE } from "../fixtures/plugins/raw-importer.mjs";

const FIXTURES = fileURLToPath(new URL("../fixtures/plugins/", import.meta.url));
const OPTIONS: ConnectorOptions = { hostname: "testhost", os: "linux", arch: "x64", cwd: "/", maxConcurrency: 4, excludes: [], noXattr: false };
const quiet = { onStderr: () => {} };

let base: string;
beforeAll(async () => {
  base = await fsp.mkdtemp(join(tmpdir(), "coffer-plugin-kits-"));
});
afterAll(async () => {
  await fsp.rm(base, { recursive: true, force: true });
});

const h = vitestHarness();

storeKit(h, "plugin raw-store", async () => {
  const dir = await fsp.mkdtemp(join(base, "store-"));
  const plugin = { name: "raw-store", executable: join(FIXTURES, "raw-store.mjs"), ...quiet };
  const store = await PluginStore.start(plugin, "raw", { dir }, OPTIONS);
  const readOnly: PluginStore[] = [];
  return {
    store,
    readOnly: async () => {
      const ro = await PluginStore.start(plugin, "raw", { dir }, { ...OPTIONS, readOnly: true });
      readOnly.push(ro);
      return ro;
    },
    cleanup: async () => {
      await Promise.all([store, ...readOnly].map((s) => s.close()));
      await fsp.rm(dir, { recursive: true, force: true });
    },
  };
});

const expected: ExpectedEntry[] = TREE.filter((e) => e.xattr === undefined).map((e): ExpectedEntry => {
  const mode = (e.mode ?? 0) >>> 0;
  const goDir = 2 ** 31;
  const goSymlink = 2 ** 27;
  const goPipe = 2 ** 25;
  const kind = Math.floor(mode / goDir) % 2 === 1 ? "dir" : Math.floor(mode / goSymlink) % 2 === 1 ? "symlink" : Math.floor(mode / goPipe) % 2 === 1 ? "fifo" : "file";
  if (e.error !== undefined) return { pathname: e.pathname, kind, error: true };
  const x: ExpectedEntry = { pathname: e.pathname, kind, mtimeNs: MTIME_NS, mode: e.pathname === "/setuid" ? 0o4755 : mode & 0o777 };
  if (e.data) x.content = new Uint8Array(e.data);
  if (e.target !== undefined) x.target = e.target;
  return x;
});

importerKit(h, "plugin raw-importer", async () => {
  const importer = await PluginImporter.start({ name: "raw-importer", executable: join(FIXTURES, "raw-importer.mjs"), ...quiet }, "raw", {}, OPTIONS);
  return { importer, expected, cleanup: () => importer.close() };
});

/** What raw-exporter wrote under `target`, with the xattrs it logged. */
async function readTree(target: string, xattrLog: string): Promise<ExpectedEntry[]> {
  const xattrs = new Map<string, Xattr[]>();
  const log = await fsp.readFile(xattrLog, "utf8").catch(() => "");
  for (const line of log.split("\n").filter(Boolean)) {
    const x = JSON.parse(line) as { pathname: string; name: string; hex: string };
    xattrs.set(x.pathname, [...(xattrs.get(x.pathname) ?? []), { name: x.name, value: new Uint8Array(Buffer.from(x.hex, "hex")) }]);
  }
  const out: ExpectedEntry[] = [];
  const walk = async (abs: string, pathname: string): Promise<void> => {
    const st = await fsp.lstat(abs, { bigint: true });
    const e: ExpectedEntry = { pathname, kind: kindOf(st), mode: Number(st.mode & 0o7777n), mtimeNs: st.mtimeNs, xattrs: xattrs.get(pathname) ?? [] };
    out.push(e);
    if (e.kind === "file") e.content = new Uint8Array(await fsp.readFile(abs));
    else if (e.kind === "symlink") e.target = await fsp.readlink(abs);
    else if (e.kind === "dir") for (const name of (await fsp.readdir(abs)).sort()) await walk(join(abs, name), pathname === "/" ? `/${name}` : `${pathname}/${name}`);
  };
  if (await fsp.lstat(target).then(() => true, () => false)) await walk(target, "/");
  return out;
}

exporterKit(h, "plugin raw-exporter", async () => {
  const dir = await fsp.mkdtemp(join(base, "export-"));
  const target = join(dir, "target");
  const xattrLog = join(dir, "xattrs.jsonl");
  const exporter = await PluginExporter.start({ name: "raw-exporter", executable: join(FIXTURES, "raw-exporter.mjs"), ...quiet }, "raw", { dir: target, xattr_log: xattrLog }, OPTIONS);
  return {
    exporter,
    supports: { symlinks: true }, // xattrs: the EXPORTXATTR flag raw-exporter declares with xattr_log
    readBack: () => readTree(target, xattrLog),
    escaped: async () => (await fsp.readdir(dir)).filter((n) => n !== "target" && n !== "xattrs.jsonl").map((n) => join(dir, n)),
    cleanup: async () => {
      await exporter.close();
      await fsp.rm(dir, { recursive: true, force: true });
    },
  };
});
