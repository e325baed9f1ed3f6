/**
 * In-process runs are hermetic: the scratch of a run (the scan cache of a
 * backup, a plugin's socket directory) is made in the TMPDIR of the run's
 * environment, and a plugin process gets the run's environment, not the
 * one of the process the run is in (test/fixtures/plugins/env-importer.mjs
 * reports what it was given).
 */
import { copyFileSync, type FSWatcher, promises as fsp, readFileSync, symlinkSync, watch } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type CofferResult, type Env, EXIT, expectExit, expectNoStackTrace, FAST_KDF, PROJECT_ROOT } from "../helpers/cli.js";
import { cofferInProcess } from "../helpers/in-process.js";

const PASS = "hermetic-e2e";
let base: string;
let data: string;
let n = 0;

const fresh = async (what: string): Promise<string> => {
  const dir = path.join(base, `${what}-${++n}`);
  await fsp.mkdir(dir);
  return dir;
};

async function run(args: string[], env: Env = {}): Promise<CofferResult> {
  const r = await cofferInProcess(args, { env: { HOME: base, XDG_DATA_HOME: data, COFFER_PASSPHRASE: PASS, COFFER_TEST_PROTO_DIR: path.join(PROJECT_ROOT, "proto"), ...env }, cwd: base });
  expectNoStackTrace(r);
  return expectExit(r, EXIT.OK);
}

/** The names created in `dir` (not below it) while it is watched. */
function created(dir: string): { names: Set<string>; watcher: FSWatcher } {
  const names = new Set<string>();
  const watcher = watch(dir, (_event, name) => {
    if (name !== null) names.add(name);
  });
  return { names, watcher };
}

beforeAll(async () => {
  base = await fsp.mkdtemp(path.join(tmpdir(), "coffer-e2e-hermetic-"));
  data = path.join(base, "data");
  await fsp.mkdir(data);
  // The test plugin is written on grpc-js: installed under DATA, it finds it here.
  symlinkSync(path.join(PROJECT_ROOT, "node_modules"), path.join(data, "node_modules"));
  const src = await fresh("plugin-src");
  for (const f of ["env-importer.mjs", "grpc-stdio.mjs"]) copyFileSync(path.join(PROJECT_ROOT, "test", "fixtures", "plugins", f), path.join(src, f));
  await fsp.writeFile(
    path.join(src, "manifest.yaml"),
    "name: envcheck\nversion: 0.0.1\napi_version: 1.0.0\ndescription: reports its environment\nconnectors:\n  - type: importer\n    protocols: [envcheck]\n    executable: env-importer.mjs\n    extra_files: [grpc-stdio.mjs]\n",
  );
  const pkg = (await run(["pkg", "create", path.join(src, "manifest.yaml"), "--out", src])).stdout.trim();
  await run(["pkg", "add", pkg]);
}, 60_000);
afterAll(async () => {
  await fsp.rm(base, { recursive: true, force: true });
});

describe("an in-process run", () => {
  it("makes a backup's scan cache in the TMPDIR of its environment, and removes it", async () => {
    const scratch = await fresh("tmp");
    const repo = path.join(base, "repo-scan");
    const tree = await fresh("tree");
    await fsp.writeFile(path.join(tree, "a.txt"), "scan cache\n");
    await run(["at", repo, "create", ...FAST_KDF], { TMPDIR: scratch });
    // A first backup (no parent) keeps its scan cache on disk from the first entry.
    const seen = created(scratch);
    try {
      await run(["at", repo, "backup", "-q", tree], { TMPDIR: scratch });
    } finally {
      seen.watcher.close();
    }
    expect([...seen.names].filter((name) => name.startsWith("coffer-scan-"))).toHaveLength(1);
    expect(await fsp.readdir(scratch)).toEqual([]);
  }, 60_000);

  it("starts a plugin with the run's environment, not the process's, its socket in the run's TMPDIR", async () => {
    const scratch = await fresh("tmp");
    const repo = path.join(base, "repo-plugin");
    const report = path.join(base, "env-report.json");
    await run(["at", repo, "create", ...FAST_KDF]);
    process.env.COFFER_TEST_HOST_ONLY = "the test process's own";
    const seen = created(scratch);
    try {
      await run(["at", repo, "backup", "-q", `envcheck:${report}`], { TMPDIR: scratch, COFFER_TEST_RUN_ONLY: "given to the run" });
    } finally {
      seen.watcher.close();
      delete process.env.COFFER_TEST_HOST_ONLY;
    }
    expect(JSON.parse(readFileSync(report, "utf8"))).toEqual({ runOnly: "given to the run", hostOnly: null, tmpdir: scratch });
    expect([...seen.names].filter((name) => name.startsWith("coffer-plugin-"))).toHaveLength(1);
    expect(await fsp.readdir(scratch)).toEqual([]);
  }, 60_000);
});
