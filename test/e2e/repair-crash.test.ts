/**
 * `repair` killed at any point leaves a repository that works and that a
 * second run repairs. The repository lives in a store plugin
 * (test/fixtures/plugins/raw-store.mjs, installed as a package) told by
 * `kill_at` to SIGKILL coffer right after its Nth put or delete of a
 * resource is durable: an exact point of the write sequence, whatever the
 * machine's speed. From the same damaged repository (a byte flipped in the
 * largest packfile, a byte flipped in a state delta), each point is tried
 * on a copy: afterwards `ls` lists both snapshots, `check` runs, a second
 * `repair index` and `repair snapshots` finish, `check --read-data` passes
 * and a backup restores identical.
 */
import { copyFileSync, promises as fsp, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { coffer, type CofferResult, describeRun, type Env, EXIT, expectExit, expectNoStackTrace, FAST_KDF, parseJson, PROJECT_ROOT } from "../helpers/cli.js";
import { cofferInProcess } from "../helpers/in-process.js";
import { flipByte } from "../helpers/inspect.js";
import { compareTrees, writeSeededFile } from "../helpers/tree.js";

const PASS = "repair-crash-e2e";
const MiB = 1024 * 1024;
/** The raw-store plugin's directories of packfiles and state deltas (resources 1 and 2). */
const PACKS = "1";
const STATES = "2";
let base: string;
let data: string;
let pristine: string;
let src: string;
let n = 0;

const env = (): Env => ({ HOME: base, XDG_DATA_HOME: data, TMPDIR: path.join(base, "tmp"), COFFER_PASSPHRASE: PASS, COFFER_TEST_PROTO_DIR: path.join(PROJECT_ROOT, "proto") });
const fresh = (what: string) => path.join(base, `${what}-${++n}`);

async function run(args: string[], ...codes: number[]): Promise<CofferResult> {
  const r = await cofferInProcess(args, { env: env(), cwd: base });
  expectNoStackTrace(r);
  return expectExit(r, ...(codes.length ? codes : [EXIT.OK]));
}

/** Runs `coffer at killable:DIR ARGS` (the binary: the plugin kills the process that started it) with the plugin told to kill it at `point`, and expects it killed. */
async function killedAt(dir: string, point: string, args: string[]): Promise<void> {
  const r = await coffer(["--store-opt", `kill_at=${point}`, "at", `killable:${dir}`, ...args], { env: env(), cwd: base });
  expect(r.signal, `killed at ${point}\n${describeRun(r)}`).toBe("SIGKILL");
}

async function largest(dir: string): Promise<string> {
  const files = await Promise.all((await fsp.readdir(dir)).map(async (f) => ({ f: path.join(dir, f), size: (await fsp.stat(path.join(dir, f))).size })));
  return files.sort((a, b) => b.size - a.size)[0]!.f;
}

beforeAll(async () => {
  base = await fsp.mkdtemp(path.join(tmpdir(), "coffer-e2e-repair-crash-"));
  data = path.join(base, "data");
  await fsp.mkdir(path.join(base, "tmp"));
  await fsp.mkdir(data);
  // The test plugins are written on grpc-js: installed under DATA, they find it here.
  symlinkSync(path.join(PROJECT_ROOT, "node_modules"), path.join(data, "node_modules"));
  const pkgDir = fresh("pkg");
  await fsp.mkdir(pkgDir);
  for (const f of ["raw-store.mjs", "grpc-stdio.mjs"]) copyFileSync(path.join(PROJECT_ROOT, "test", "fixtures", "plugins", f), path.join(pkgDir, f));
  await fsp.writeFile(
    path.join(pkgDir, "manifest.yaml"),
    "name: killable\nversion: 0.0.1\napi_version: 1.0.0\ndescription: a store that can kill its host\nconnectors:\n" +
      "  - type: storage\n    protocols: [killable]\n    executable: raw-store.mjs\n    extra_files: [grpc-stdio.mjs]\n" +
      "    parameters:\n      - name: kill_at\n        type: string\n        description: OP:RESOURCE:N, the operation after which the host is killed\n",
  );
  const pkg = (await run(["pkg", "create", path.join(pkgDir, "manifest.yaml"), "--out", pkgDir])).stdout.trim();
  await run(["pkg", "add", pkg]);

  src = fresh("src");
  await fsp.mkdir(src);
  for (let i = 0; i < 4; i++) await writeSeededFile(path.join(src, `f${i}.bin`), `crash-${i}`, MiB + i);
  await fsp.writeFile(path.join(src, "note.txt"), "small\n");
  pristine = fresh("repo");
  await run(["at", `killable:${pristine}`, "create", ...FAST_KDF]);
  await run(["at", `killable:${pristine}`, "backup", "-q", src]);
  await fsp.writeFile(path.join(src, "later.txt"), "a second snapshot\n");
  await run(["at", `killable:${pristine}`, "backup", "-q", src]);
  // The damage every copy starts from.
  const pack = await largest(path.join(pristine, PACKS));
  await flipByte(pack, (await fsp.stat(pack)).size >> 1);
  const delta = path.join(pristine, STATES, (await fsp.readdir(path.join(pristine, STATES))).sort()[0]!);
  await flipByte(delta, (await fsp.stat(delta)).size >> 1);
}, 120_000);

afterAll(async () => {
  await fsp.rm(base, { recursive: true, force: true });
});

async function copyOfDamaged(): Promise<string> {
  const dir = fresh("copy");
  await fsp.cp(pristine, dir, { recursive: true });
  return dir;
}

/** What must hold after any crash: both snapshots listed, check runs; then a full repair and a backup leave it whole. */
async function expectRepairable(dir: string): Promise<void> {
  const at = ["at", `killable:${dir}`];
  const ls = await run([...at, "ls", "--json"]);
  expect(parseJson<unknown[]>(ls), describeRun(ls)).toHaveLength(2);
  await run([...at, "check", "--fast"], EXIT.OK, EXIT.ERROR);
  await run([...at, "repair", "index"]);
  await run([...at, "repair", "snapshots"]);
  const ok = await run([...at, "check", "--read-data"]);
  expect(ok.stdout).toMatch(/checked 2 snapshots, .*no problems/);
  const b = parseJson<{ short: string }>(await run([...at, "backup", "--json", src]));
  const out = fresh("restore");
  await run([...at, "restore", "--to", out, b.short]);
  expect(await compareTrees(src, out, { rootMeta: false })).toEqual([]);
}

describe("repair killed at any point", () => {
  it("the damaged repository needs repair: what every crash below starts from", async () => {
    const dir = await copyOfDamaged();
    const c = await run(["at", `killable:${dir}`, "check"], EXIT.ERROR);
    expect(c.stdout).toContain("state delta");
    expect(c.stdout).toContain("authentication failed");
  });

  // repair index writes the salvaged blobs' packfile (put 1), then state deltas (put 2: the salvage's, the
  // consolidated one, the records), then deletes the old deltas (delete 2).
  for (const point of ["put:1:1", "put:2:1", "put:2:3", "delete:2:1", "delete:2:3"]) {
    it(`repair index killed after ${point}`, async () => {
      const dir = await copyOfDamaged();
      await killedAt(dir, point, ["repair", "index"]);
      await expectRepairable(dir);
    });
  }

  // repair snapshots writes the new trees and header (put 1), then the delta that commits the new snapshot and
  // removes the old one (put 2): killed before it the old snapshot stays, after it the new one replaces it.
  for (const point of ["put:1:1", "put:2:1"]) {
    it(`repair snapshots killed after ${point}`, async () => {
      const dir = await copyOfDamaged();
      await run(["at", `killable:${dir}`, "repair", "index"]);
      await killedAt(dir, point, ["repair", "snapshots"]);
      await expectRepairable(dir);
    });
  }
});
