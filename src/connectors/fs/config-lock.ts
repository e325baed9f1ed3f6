/**
 * The fs store's lock around replacing CONFIG (Store.replaceConfig): a file
 * tmp/config.replacing holding {"host","pid"} of its holder, created whole
 * (LocalIo.createWhole) so that it is never seen empty, and so that two
 * `coffer key` commands never both compare CONFIG with what they read and
 * then rename over it. A lock left by a process that died on this host is
 * taken over; any other that is older than an hour is removed by open() as
 * every stale temp file is (local-io.ts, sweepStaleTemps).
 */
import { randomBytes } from "node:crypto";
import { promises as fsp } from "node:fs";
import { hostname } from "node:os";
import * as path from "node:path";
import { CofferError } from "../../util/errors.js";
import type { LocalIo } from "../local-io.js";
import { TMP } from "./layout.js";
import { processAlive } from "../../util/process.js";

const NAME = "config.replacing";


/** Whether the lock file at `file` was left by a process of this host that is gone. */
async function abandoned(file: string): Promise<boolean> {
  const text = await fsp.readFile(file, "utf8").catch(() => null);
  if (text === null) return false;
  try {
    const o = JSON.parse(text) as { host?: unknown; pid?: unknown };
    return o.host === hostname() && typeof o.pid === "number" && o.pid !== process.pid && !processAlive(o.pid);
  } catch {
    return false;
  }
}

/**
 * Takes the lock of the store at `root` (a repository: its tmp/ is made if
 * missing); the function returned releases it. Rejects with LOCKED while
 * another process holds it.
 */
export async function lockConfigReplace(io: LocalIo, root: string, signal?: AbortSignal): Promise<() => Promise<void>> {
  const dir = path.join(root, TMP);
  const file = path.join(dir, NAME);
  const body = `${JSON.stringify({ host: hostname(), pid: process.pid })}\n`;
  await io.run("mkdir", dir, signal, () => fsp.mkdir(dir, { recursive: true }));
  for (let attempt = 0; ; attempt++) {
    if (await io.createWhole(file, path.join(dir, `${randomBytes(16).toString("hex")}.tmp`), body, signal)) {
      return async () => void (await fsp.rm(file, { force: true }).catch(() => undefined));
    }
    if (attempt < 2 && (await abandoned(file))) {
      await fsp.rm(file, { force: true }).catch(() => undefined);
      continue;
    }
    throw new CofferError("LOCKED", `[fs] another process is replacing the configuration of ${root} (${file}); if none is, remove that file`, { root, path: file });
  }
}
