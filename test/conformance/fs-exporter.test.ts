/**
 * The exporter kit on FsExporter writing into base/target: readBack() walks
 * the target with readTree (./read-tree.ts: lstat for kinds, modes, mtimes,
 * content, symlink targets, hard links by inode; user.* xattrs read with
 * getfattr), and escaped() lists whatever appeared in base next to the
 * target.
 */
import { promises as fsp } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FsExporter } from "../../src/connectors/fs/exporter.js";
import { exporterKit } from "../../src/sdk/kits/index.js";
import { vitestHarness } from "./harness.js";
import { readTree } from "./read-tree.js";

exporterKit(vitestHarness(), "fs", async () => {
  const base = await fsp.mkdtemp(join(tmpdir(), "coffer-kit-fs-exporter-"));
  const target = join(base, "target");
  return {
    exporter: new FsExporter(target),
    supports: { symlinks: true, hardlinks: true, fifos: true }, // xattrs: EXPORTXATTR
    readBack: () => readTree(target),
    escaped: async () => (await fsp.readdir(base)).filter((n) => n !== "target").map((n) => join(base, n)),
    cleanup: () => fsp.rm(base, { recursive: true, force: true }),
  };
});
