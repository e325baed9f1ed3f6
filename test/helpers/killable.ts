/**
 * A repository that can kill the CLI using it: the raw-store test plugin
 * (test/fixtures/plugins/raw-store.mjs) installed as package `killable`,
 * for `coffer at killable:DIR ...`. `--store-opt kill_at=POINT` makes the
 * plugin SIGKILL coffer once the chosen operation is done (`put:1:2`: the
 * second put of a packfile, resource 1; `create:0:1`: the configuration), and
 * `--store-opt trace=FILE` has it log every operation it counts.
 *
 * The plugin keeps objects as plain files (DIR/CONFIG, DIR/<resource>/<hex
 * MAC>), so a repository can be moved between it and a MemoryStore:
 * prepared in process, then used by the built CLI, then examined in
 * process again.
 */
import { copyFileSync, promises as fsp, symlinkSync } from "node:fs";
import * as path from "node:path";
import { expect } from "vitest";
import { Resource, resourceName } from "../../src/connectors/flags.js";
import type { MemoryBacking } from "../../src/connectors/memory/store.js";
import { coffer, type CofferResult, describeRun, type Env, expectExit, expectNoStackTrace, PROJECT_ROOT } from "./cli.js";

/** Installs the `killable` package under `base` (HOME, data and temporary directories there); returns the environment of CLI runs that use it. */
export async function installKillable(base: string, passphrase: string): Promise<Env> {
  const data = path.join(base, "data");
  await fsp.mkdir(path.join(base, "tmp"), { recursive: true });
  await fsp.mkdir(data, { recursive: true });
  // The test plugins are written on grpc-js: installed under DATA, they find it here.
  symlinkSync(path.join(PROJECT_ROOT, "node_modules"), path.join(data, "node_modules"));
  const env: Env = { HOME: base, XDG_DATA_HOME: data, TMPDIR: path.join(base, "tmp"), COFFER_PASSPHRASE: passphrase, COFFER_TEST_PROTO_DIR: path.join(PROJECT_ROOT, "proto") };
  const pkgDir = path.join(base, "killable-pkg");
  await fsp.mkdir(pkgDir);
  for (const f of ["raw-store.mjs", "grpc-stdio.mjs"]) copyFileSync(path.join(PROJECT_ROOT, "test", "fixtures", "plugins", f), path.join(pkgDir, f));
  await fsp.writeFile(
    path.join(pkgDir, "manifest.yaml"),
    "name: killable\nversion: 0.0.1\napi_version: 1.0.0\ndescription: a store that can kill its host\nconnectors:\n" +
      "  - type: storage\n    protocols: [killable]\n    executable: raw-store.mjs\n    extra_files: [grpc-stdio.mjs]\n" +
      "    parameters:\n" +
      "      - name: kill_at\n        type: string\n        description: OP:RESOURCE:N, the operation after which the host is killed\n" +
      "      - name: trace\n        type: string\n        description: a file that gets a line per operation\n",
  );
  const run = async (args: string[]) => {
    const r = await coffer(args, { env, cwd: base });
    expectNoStackTrace(r);
    return expectExit(r, 0);
  };
  const pkg = (await run(["pkg", "create", path.join(pkgDir, "manifest.yaml"), "--out", pkgDir])).stdout.trim();
  await run(["pkg", "add", pkg]);
  return env;
}

/** Runs `coffer --store-opt kill_at=POINT at killable:DIR ARGS` and expects it killed there. */
export async function runKilled(env: Env, dir: string, point: string, args: string[], cwd: string): Promise<CofferResult> {
  const r = await coffer(["--store-opt", `kill_at=${point}`, "at", `killable:${dir}`, ...args], { env, cwd });
  expect(r.signal, `killed at ${point}\n${describeRun(r)}`).toBe("SIGKILL");
  return r;
}

/** One operation of a plugin trace: "put packfile". */
export interface TracedOp {
  n: number;
  op: string;
  /** The resource's name ("packfile", "state", "lock"), or "" for create. */
  resource: string;
}

export async function readTrace(file: string): Promise<TracedOp[]> {
  const text = await fsp.readFile(file, "utf8").catch(() => "");
  return text
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => {
      const [n, op, type] = l.split(" ");
      return { n: Number(n), op: op!, resource: Number(type) === 0 ? "" : resourceName(Number(type) as Resource) };
    });
}

const RESOURCES = Object.values(Resource);

/** Writes a memory repository into DIR as the plugin keeps it. */
export async function writeRawStore(backing: MemoryBacking, dir: string): Promise<void> {
  await fsp.mkdir(dir, { recursive: true });
  if (backing.config) await fsp.writeFile(path.join(dir, "CONFIG"), backing.config);
  for (const r of RESOURCES) {
    await fsp.mkdir(path.join(dir, String(r)), { recursive: true });
    for (const [hex, bytes] of backing.objects.get(r) ?? []) await fsp.writeFile(path.join(dir, String(r), hex), bytes);
  }
}

/** Reads the repository the plugin keeps in DIR into a MemoryBacking (objects in name order). */
export async function readRawStore(dir: string): Promise<MemoryBacking> {
  const config = await fsp.readFile(path.join(dir, "CONFIG")).then((b) => new Uint8Array(b), () => undefined);
  const objects = new Map<Resource, Map<string, Uint8Array>>();
  for (const r of RESOURCES) {
    const names = (await fsp.readdir(path.join(dir, String(r))).catch(() => [])).filter((n) => /^[0-9a-f]{64}$/.test(n)).sort();
    const m = new Map<string, Uint8Array>();
    for (const n of names) m.set(n, new Uint8Array(await fsp.readFile(path.join(dir, String(r), n))));
    objects.set(r, m);
  }
  return { config, objects };
}
