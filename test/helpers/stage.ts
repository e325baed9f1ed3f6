/**
 * A copy of the built CLI and of the Node running the tests in a directory
 * every user may enter, for tests that run coffer as another user: the
 * checkout itself may live where only root can reach it (a clone under a
 * 0700 home or `mktemp -d`). Files are hard-linked where the file system
 * allows (fast, no space) and copied otherwise; no symlink points back into
 * the checkout.
 */
import { execFileSync } from "node:child_process";
import { promises as fsp } from "node:fs";
import * as path from "node:path";
import { PROJECT_ROOT } from "./cli.js";

/** What `npm pack` ships (package.json "files") plus the installed dependencies. */
const PARTS = ["package.json", "bin", "dist", "proto", "manifests", "node_modules"];

function linkOrCopy(from: string, to: string): void {
  try {
    execFileSync("cp", ["-al", from, to], { stdio: "pipe" });
  } catch {
    execFileSync("rm", ["-rf", to]);
    execFileSync("cp", ["-a", from, to], { stdio: "pipe" });
  }
}

export interface StagedCli {
  /** The Node binary to run. */
  node: string;
  /** The launcher, bin/coffer.js of the copy. */
  bin: string;
}

/** Stages the CLI under `dir` (created, mode 0755 up to it) and returns how to run it. */
export async function stageCli(dir: string): Promise<StagedCli> {
  const root = path.join(dir, "coffer");
  await fsp.mkdir(root, { recursive: true });
  for (const d of [dir, root]) await fsp.chmod(d, 0o755);
  for (const part of PARTS) linkOrCopy(path.join(PROJECT_ROOT, part), path.join(root, part));
  const node = path.join(dir, "node");
  linkOrCopy(process.execPath, node);
  return { node, bin: path.join(root, "bin", "coffer.js") };
}
