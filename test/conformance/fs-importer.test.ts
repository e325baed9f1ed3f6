/**
 * The importer kit on FsImporter over a temp tree holding every kind of
 * entry it handles: directories, empty/small/multi-piece files, a FIFO,
 * symlinks (one dangling), hard links, odd names, special mode bits, an
 * exact mtime, user xattrs, and two kinds of failure:
 * - a directory whose path is longer than PATH_MAX: lstat fails with
 *   ENAMETOOLONG whoever runs the test, so it is an error record (and the
 *   entries after it are still imported);
 * - a file with mode 0o000: unreadable for other users (open() fails, as
 *   the core sees it: a content error), readable for root (its content is
 *   expected). The expectation follows who runs the test; both are asserted.
 */
import { spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { promises as fsp } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FsImporter } from "../../src/connectors/fs/importer.js";
import { importerKit } from "../../src/sdk/kits/index.js";
import type { ExpectedEntry } from "../../src/sdk/kits/index.js";
import { vitestHarness } from "./harness.js";
import { setXattr } from "../helpers/tree.js";

const isRoot = process.getuid?.() === 0;
const PATH_MAX = 4096;

function run(cmd: string, args: string[], cwd?: string): void {
  const r = spawnSync(cmd, args, { cwd, encoding: "utf8" });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")}: ${r.stderr || r.error?.message || `exit ${r.status}`}`);
}

async function makeTree(): Promise<{ root: string; expected: ExpectedEntry[]; cleanup: () => Promise<void> }> {
  const root = await fsp.mkdtemp(join(tmpdir(), "coffer-kit-fs-importer-"));
  const expected: ExpectedEntry[] = [];
  const abs = (rel: string) => join(root, rel);
  const dir = async (rel: string, mode: number) => {
    await fsp.mkdir(abs(rel));
    await fsp.chmod(abs(rel), mode);
    expected.push({ pathname: `/${rel}`, kind: "dir", mode });
  };
  const file = async (rel: string, content: Buffer, mode: number, extra: Partial<ExpectedEntry> = {}) => {
    await fsp.writeFile(abs(rel), content);
    await fsp.chmod(abs(rel), mode);
    expected.push({ pathname: `/${rel}`, kind: "file", size: content.byteLength, content, mode, ...extra });
  };

  await fsp.chmod(root, 0o755);
  expected.push({ pathname: "/", kind: "dir", mode: 0o755 });
  await dir("a-dir", 0o750);
  await file("a-dir/nested.txt", Buffer.from("nested\n"), 0o640);
  await dir("a-dir/empty-dir", 0o700);
  // Larger than one read piece (4 MiB): several pieces; checked by hash.
  const big = randomBytes(5 * 1024 * 1024 + 17);
  await file("big.bin", big, 0o644, { content: undefined, sha256: createHash("sha256").update(big).digest("hex") });
  await file("empty", Buffer.alloc(0), 0o600);
  await file("setuid", Buffer.from("#!/bin/sh\n"), 0o4750);
  await file("name with spaces & ünïcode ✓.txt", Buffer.from("odd name\n"), 0o644);

  run("mkfifo", ["-m", "640", abs("fifo")]);
  expected.push({ pathname: "/fifo", kind: "fifo", mode: 0o640 });

  await file("hard-a", Buffer.from("shared inode\n"), 0o644);
  await fsp.link(abs("hard-a"), abs("hard-b"));
  expected.push({ pathname: "/hard-b", kind: "file", size: 13, content: "shared inode\n", mode: 0o644, sameAs: "/hard-a" });

  await fsp.symlink("a-dir/nested.txt", abs("link"));
  expected.push({ pathname: "/link", kind: "symlink", target: "a-dir/nested.txt" });
  await fsp.symlink("does/not/exist", abs("dangling"));
  expected.push({ pathname: "/dangling", kind: "symlink", target: "does/not/exist" });

  await fsp.writeFile(abs("mtime.txt"), "exact time\n");
  run("touch", ["-m", "-d", "@1577934245.123456789", abs("mtime.txt")]);
  expected.push({ pathname: "/mtime.txt", kind: "file", content: "exact time\n", mtimeNs: 1577934245123456789n });

  const text = Buffer.from("value ✓");
  const bin = Buffer.from([0, 0xff, 0x3d, 0x0a]);
  await file("xattrs.txt", Buffer.from("with attributes\n"), 0o644, {
    xattrs: [
      { name: "user.coffer.text", value: text },
      { name: "user.coffer.bin", value: bin },
    ],
  });
  setXattr(abs("xattrs.txt"), "user.coffer.text", text);
  setXattr(abs("xattrs.txt"), "user.coffer.bin", bin);

  // Unreadable for anyone but root.
  await file("locked", Buffer.from("secret\n"), 0o000, isRoot ? {} : { content: undefined, contentError: true });

  // A chain of directories up to PATH_MAX, then one whose path is longer: an error record.
  await dir("deep", 0o755);
  let cur = "deep";
  while (root.length + 1 + cur.length + 1 + 240 < PATH_MAX) {
    cur = `${cur}/${"d".repeat(240)}`;
    await dir(cur, 0o755);
  }
  const tooLong = "e".repeat(250);
  run("mkdir", [tooLong], abs(cur)); // relative to a cwd: the absolute path is too long for mkdir(2)
  expected.push({ pathname: `/${cur}/${tooLong}`, kind: "dir", error: true });
  const deepest = abs(cur);

  await file("z-after-the-error.txt", Buffer.from("imported after the error record\n"), 0o644);

  return {
    root,
    expected,
    cleanup: async () => {
      spawnSync("rmdir", [tooLong], { cwd: deepest });
      await fsp.rm(root, { recursive: true, force: true });
    },
  };
}

importerKit(vitestHarness(), "fs", async () => {
  const t = await makeTree();
  return { importer: new FsImporter(t.root), expected: t.expected, cleanup: t.cleanup };
});
