/**
 * A repository written before names could be bytes (test/fixtures/v1-repo,
 * described in test/fixtures/v1-repo.md) still lists, restores and checks
 * with the built CLI. The fixture is copied first: git keeps no empty
 * directories, and commands may write locks.
 */
import { createHash } from "node:crypto";
import { promises as fsp } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { describeRun, EXIT, expectExit, expectNoStackTrace, lines, PROJECT_ROOT } from "../helpers/cli.js";
import { cofferInProcess } from "../helpers/in-process.js";

const FIXTURE = path.join(PROJECT_ROOT, "test", "fixtures", "v1-repo");
const env = { COFFER_PASSPHRASE: "fixture-v1" };
let base = "";
let repo = "";

const sha256 = async (p: string) => createHash("sha256").update(await fsp.readFile(p)).digest("hex");

beforeAll(async () => {
  base = await fsp.mkdtemp(path.join(tmpdir(), "coffer-v1-"));
  repo = path.join(base, "repo");
  await fsp.cp(FIXTURE, repo, { recursive: true });
});
afterAll(async () => {
  if (base) await fsp.rm(base, { recursive: true, force: true });
});

describe("a v1 repository from before this format change", () => {
  it("lists its snapshot and the snapshot's tree", async () => {
    const r = expectExit(await cofferInProcess(["at", repo, "ls"], { env }), EXIT.OK);
    expect(lines(r.stdout)).toHaveLength(1);
    expect(r.stdout).toMatch(/^0b4c81d0 .*\/tmp\/fx\/src\s+\[v1\]$/m);
    const tree = expectExit(await cofferInProcess(["at", repo, "ls", "-R", "0b4c81d0"], { env }), EXIT.OK);
    for (const name of ["hello.txt", "empty.bin", "hardlink.txt", "link", "empty", "sub", "numbers.txt", "random.bin"]) {
      expect(tree.stdout, describeRun(tree)).toContain(name);
    }
  });

  it("restores every entry as it was backed up", async () => {
    const to = path.join(base, "restored");
    expectExit(await cofferInProcess(["at", repo, "restore", "--to", to, "0b4c81d0"], { env }), EXIT.OK);
    expect(await sha256(path.join(to, "hello.txt"))).toBe("586622c26589b6060f50857879c985babdbc1087f1baa735037fffb50c14720a");
    expect(await sha256(path.join(to, "sub/numbers.txt"))).toBe("f6351f5ead9a700e34275480b3856ea738122a7c57bdeb744a631251c069587a");
    expect(await sha256(path.join(to, "sub/random.bin"))).toBe("1fd3a746f09bb8b1df337fe7c3d919528743673dee191c0defe7b37908d12e1e");
    expect((await fsp.stat(path.join(to, "empty.bin"))).size).toBe(0);
    expect(await fsp.readlink(path.join(to, "link"))).toBe("hello.txt");
    const hello = await fsp.stat(path.join(to, "hello.txt"), { bigint: true });
    expect(hello.mode & 0o777n).toBe(0o640n);
    // Node's utimes takes seconds as a double: the restored time is exact to the microsecond.
    expect(Number(hello.mtimeNs - 1577934245123456789n) / 1000).toBeCloseTo(0, 0);
    const [a, b] = await Promise.all([fsp.stat(path.join(to, "hardlink.txt")), fsp.stat(path.join(to, "sub/numbers.txt"))]);
    expect(a.ino).toBe(b.ino);
    expect((await fsp.stat(path.join(to, "sub"))).mtimeMs).toBe(Date.UTC(2019, 4, 5, 5, 5, 5));
    expect((await fsp.readdir(path.join(to, "empty")))).toEqual([]);
  });

  it("checks clean, reading every blob", async () => {
    const r = await cofferInProcess(["at", repo, "check"], { env });
    expectNoStackTrace(r);
    expect(r.exitCode, describeRun(r)).toBe(EXIT.OK);
  });

  it("writes one file's content with cat", async () => {
    const r = expectExit(await cofferInProcess(["at", repo, "cat", "0b4c81d0:/hello.txt"], { env }), EXIT.OK);
    expect(r.stdout).toBe("hello v1\n");
  });
});
