/**
 * Plugins end to end through the built CLI: packages built from the
 * manifests this repository ships (manifests/ -> dist/plugins/NAME/),
 * installed with `coffer pkg`, then a backup through a plugin importer into
 * a repository on a plugin store and a restore through a plugin exporter.
 * Then misbehaving plugins (test/fixtures/plugins/faulty.mjs, written on
 * grpc-js alone) installed the same way: each fault is a clear error naming
 * the plugin, no snapshot, a repository that checks clean, and no plugin
 * process left behind; Ctrl-C ends a plugin that hangs.
 */
import { copyFileSync, existsSync, promises as fsp, readdirSync, readFileSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type CofferResult, describeRun, type Env, EXIT, expectExit, expectNoStackTrace, FAST_KDF, PROJECT_ROOT, parseJson, startCoffer, waitForStderr } from "../helpers/cli.js";
import { cofferInProcess } from "../helpers/in-process.js";
import { prng } from "../helpers/prng.js";
import { compareTrees, setXattr } from "../helpers/tree.js";

const PASS = "plugins-e2e";
let base: string;
let data: string;
let n = 0;

beforeAll(async () => {
  base = await fsp.mkdtemp(path.join(tmpdir(), "coffer-e2e-plugins-"));
  data = path.join(base, "data");
  await fsp.mkdir(path.join(base, "tmp"));
  await fsp.mkdir(data);
  // The test plugins are written on grpc-js: installed under DATA, they find it here.
  symlinkSync(path.join(PROJECT_ROOT, "node_modules"), path.join(data, "node_modules"));
});
afterAll(async () => {
  await fsp.rm(base, { recursive: true, force: true });
});

const fresh = (what: string) => path.join(base, `${what}-${++n}`);

function env(extra: Env = {}): Env {
  return { HOME: base, XDG_DATA_HOME: data, TMPDIR: path.join(base, "tmp"), COFFER_PASSPHRASE: PASS, COFFER_TEST_PROTO_DIR: path.join(PROJECT_ROOT, "proto"), ...extra };
}

async function run(args: string[], o: { code?: number; input?: string; env?: Env } = {}): Promise<CofferResult> {
  const r = await cofferInProcess(args, { env: env(o.env), cwd: base, ...(o.input !== undefined ? { input: o.input } : {}) });
  expectNoStackTrace(r);
  return expectExit(r, o.code ?? EXIT.OK);
}

/** Pids of live processes whose command line mentions the plugin data directory. */
function pluginPids(): number[] {
  const pids: number[] = [];
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const cmd = readFileSync(`/proc/${d}/cmdline`, "utf8");
      if (cmd.includes(data)) pids.push(Number(d));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

async function noPluginLeft(): Promise<void> {
  const t0 = Date.now();
  while (pluginPids().length > 0 && Date.now() - t0 < 20_000) await new Promise((r) => setTimeout(r, 50));
  expect(pluginPids()).toEqual([]);
}

async function makeTree(root: string): Promise<void> {
  await fsp.mkdir(path.join(root, "docs", "deep"), { recursive: true });
  await fsp.writeFile(path.join(root, "docs", "readme.txt"), "plugins all the way down\n");
  await fsp.writeFile(path.join(root, "docs", "deep", "big.bin"), prng(11, 3 * 1024 * 1024 + 7));
  await fsp.writeFile(path.join(root, "empty"), "");
  await fsp.writeFile(path.join(root, "run.sh"), "#!/bin/sh\necho hi\n", { mode: 0o750 });
  await fsp.symlink("docs/readme.txt", path.join(root, "link"));
  // Extended attributes travel as records of their own on the plugin wire.
  setXattr(path.join(root, "docs", "readme.txt"), "user.note", "through two plugins");
  setXattr(path.join(root, "docs", "deep", "big.bin"), "user.bin", Buffer.from([0, 255, 10, 13]));
  await fsp.utimes(path.join(root, "docs", "readme.txt"), new Date("2020-02-02T02:02:02.5Z"), new Date("2020-02-02T02:02:02.5Z"));
}

describe("the shipped plugfs plugins, packaged and installed", () => {
  it("pkg create/add/ls/show, then backup via a plugin importer into a plugin store and restore via a plugin exporter", async () => {
    const manifest = path.join(PROJECT_ROOT, "dist", "plugins", "plugfs", "manifest.yaml");
    expect(existsSync(manifest), "npm run build stages dist/plugins/plugfs/manifest.yaml").toBe(true);
    const out = fresh("pkgs");
    await fsp.mkdir(out);
    const created = await run(["pkg", "create", manifest, "--out", out]);
    const pkgFile = created.stdout.trim();
    expect(path.basename(pkgFile)).toBe("plugfs_1.0.0.ptar");
    await run(["pkg", "add", pkgFile]);
    const ls = parseJson<{ name: string; version: string; connectors: { type: string; protocols: string[] }[] }[]>(await run(["pkg", "ls", "--json"]));
    expect(ls.map((p) => p.name)).toContain("plugfs");
    expect(ls.find((p) => p.name === "plugfs")!.connectors.map((c) => c.type).sort()).toEqual(["exporter", "importer", "storage"]);
    const show = await run(["pkg", "show", "plugfs"]);
    expect(show.stdout).toContain("read_only");
    const connectors = await run(["connectors"]);
    expect(connectors.stdout).toContain("plugfs 1.0.0");

    const src = fresh("src");
    await makeTree(src);
    const repo = `plugfs:${fresh("repo")}`;
    await run(["at", repo, "create", ...FAST_KDF]);
    const b = parseJson<{ id: string; files: number; errors: number }>(await run(["at", repo, "backup", "--json", `plugfs:${src}`]));
    expect(b.files).toBe(4);
    expect(b.errors).toBe(0);
    const target = fresh("restored");
    await run(["at", repo, "restore", "-q", "--to", `plugfs:${target}`, b.id.slice(0, 8)]);
    expect(await compareTrees(src, target, { rootMeta: false })).toEqual([]);
    await run(["at", repo, "check"]);
    // Plugin options are validated before the plugin starts.
    const bad = await run(["at", repo, "backup", "-o", "one_file_system=maybe", `plugfs:${src}`], { code: EXIT.USAGE });
    expect(bad.stderr).toContain("one_file_system");
    const ro = await run(["--store-opt", "read_only=true", "at", repo, "backup", `plugfs:${src}`], { code: EXIT.ERROR });
    expect(ro.stderr).toContain("read-only");
    await noPluginLeft();
  }, 120_000);
});

const FAULTS: [string, string, RegExp][] = [
  ["crash", "crash-import", /code 7/],
  ["exitstart", "exit-at-start", /code 3/],
  ["garbage", "garbage", /stdout/i],
  ["hanginit", "hang-init", /Init/],
  ["badflag", "unknown-flag", /flags 0x400/],
  ["malformed", "malformed", /pathname/i],
  ["oversized", "oversized", /larger than|too large|exceeds|size/i],
];

async function installFaulty(): Promise<void> {
  const dir = fresh("faulty-src");
  await fsp.mkdir(dir);
  for (const f of ["faulty.mjs", "grpc-stdio.mjs"]) copyFileSync(path.join(PROJECT_ROOT, "test", "fixtures", "plugins", f), path.join(dir, f));
  const connectors = [...FAULTS, ["hangping", "hang-ping", /./] as const]
    .map(([proto, mode]) => `  - type: importer\n    protocols: [${proto}]\n    executable: faulty.mjs\n    args: [${mode}]\n    extra_files: [grpc-stdio.mjs]\n`)
    .join("");
  await fsp.writeFile(path.join(dir, "manifest.yaml"), `name: faulty\nversion: 0.0.1\napi_version: 1.0.0\ndescription: misbehaving test plugins\nconnectors:\n${connectors}`);
  const pkg = (await run(["pkg", "create", path.join(dir, "manifest.yaml"), "--out", dir])).stdout.trim();
  await run(["pkg", "add", "--force", pkg]);
}

describe("misbehaving plugins", () => {
  let repo: string;
  beforeAll(async () => {
    await installFaulty();
    repo = fresh("repo");
    await run(["at", repo, "create", ...FAST_KDF]);
    await run(["at", repo, "backup", "-q", "stdin:before"], { input: "a snapshot from before the faults" });
  }, 60_000);

  it.each(FAULTS)("%s (%s): a clear error naming the plugin, no snapshot, a clean repository, no process left", async (proto, _mode, what) => {
    // Only the plugin that never answers Init gets a short deadline: a loaded machine may take seconds to start the others.
    const r = await run(["at", repo, "backup", `${proto}:x`], { code: EXIT.ERROR, ...(proto === "hanginit" ? { env: { COFFER_PLUGIN_TIMEOUT_MS: "1500" } } : {}) });
    expect(r.stderr, describeRun(r)).toContain("faulty");
    expect(r.stderr, describeRun(r)).toMatch(what);
    const snaps = parseJson<{ source: string }[]>(await run(["at", repo, "ls", "--json"]));
    expect(snaps.map((s) => s.source)).toEqual(["stdin:/before"]);
    await run(["at", repo, "check"]);
    await noPluginLeft();
  }, 120_000);

  it("Ctrl-C during a call the plugin never answers ends the plugin and exits 130", async () => {
    const child = startCoffer(["at", repo, "backup", "hangping:x"], { env: env({ COFFER_PLUGIN_TIMEOUT_MS: "600000" }), cwd: base });
    // The plugin says when it holds the Ping (its stderr comes through the host's): interrupt then.
    await waitForStderr(child, /\[plugin faulty\] faulty: holding Ping\n/);
    expect(pluginPids().length).toBeGreaterThan(0);
    child.child.kill("SIGINT");
    const r = await child.result;
    expect(r.exitCode, describeRun(r)).toBe(EXIT.INTERRUPTED);
    await noPluginLeft();
    const snaps = parseJson<{ source: string }[]>(await run(["at", repo, "ls", "--json"]));
    expect(snaps).toHaveLength(1);
  }, 60_000);
});

describe("pkg: refusals", () => {
  it("a damaged package, a taken protocol, a bad manifest and a second install are refused with the reason", async () => {
    const manifest = path.join(PROJECT_ROOT, "dist", "plugins", "plugfs", "manifest.yaml");
    const out = fresh("pkgs");
    await fsp.mkdir(out);
    const pkgFile = (await run(["pkg", "create", manifest, "--out", out])).stdout.trim();

    // Already installed (by the first test) unless removed: make sure of the state.
    await run(["pkg", "add", "--force", pkgFile]);
    const again = await run(["pkg", "add", pkgFile], { code: EXIT.USAGE });
    expect(again.stderr).toContain("already installed");

    // Another package wanting plugfs: is refused, then takes it with --force.
    const dir = fresh("other");
    await fsp.mkdir(dir);
    copyFileSync(path.join(PROJECT_ROOT, "dist", "plugins", "plugfs", "importer.js"), path.join(dir, "imp.js"));
    await fsp.writeFile(path.join(dir, "m.yaml"), "name: other\nversion: 2.0.0\napi_version: 1.0.0\nconnectors:\n  - type: importer\n    protocols: [plugfs]\n    executable: imp.js\n");
    const other = (await run(["pkg", "create", path.join(dir, "m.yaml"), "--out", dir])).stdout.trim();
    const taken = await run(["pkg", "add", other], { code: EXIT.USAGE });
    expect(taken.stderr).toContain('"plugfs"');
    expect(taken.stderr).toContain("plugfs");
    await run(["pkg", "add", "--force", other]);
    expect(parseJson<{ name: string }[]>(await run(["pkg", "ls", "--json"])).map((p) => p.name)).not.toContain("plugfs");
    await run(["pkg", "rm", "other"]);
    const rmAgain = await run(["pkg", "rm", "other"], { code: EXIT.USAGE });
    expect(rmAgain.stderr).toContain("other");

    // A built-in protocol is refused too.
    await fsp.writeFile(path.join(dir, "fs.yaml"), "name: myfs\nversion: 1.0.0\napi_version: 1.0.0\nconnectors:\n  - type: importer\n    protocols: [fs]\n    executable: imp.js\n");
    const fsPkg = (await run(["pkg", "create", path.join(dir, "fs.yaml"), "--out", dir])).stdout.trim();
    expect((await run(["pkg", "add", fsPkg], { code: EXIT.USAGE })).stderr).toContain("built-in");

    // A flipped byte in the package's content is found before anything is installed.
    const bytes = await fsp.readFile(pkgFile);
    bytes[Math.floor(bytes.length / 3)]! ^= 0x55;
    const damaged = path.join(out, "damaged.ptar");
    await fsp.writeFile(damaged, bytes);
    const d = await run(["pkg", "add", "--force", damaged], { code: EXIT.ERROR });
    expect(d.stderr).toMatch(/damaged|corrupt|checksum/i);
    expect(parseJson<{ name: string }[]>(await run(["pkg", "ls", "--json"])).map((p) => p.name)).not.toContain("plugfs");

    // A bad manifest names the field.
    await fsp.writeFile(path.join(dir, "bad.yaml"), "name: bad\nversion: 1.0.0\napi_version: 1.0.0\nconnectors:\n  - type: importer\n    protocols: [x]\n    executable: imp.js\n");
    const bad = await run(["pkg", "create", path.join(dir, "bad.yaml"), "--out", dir], { code: EXIT.USAGE });
    expect(bad.stderr).toContain("connectors[0].protocols[0]");
  }, 60_000);
});
