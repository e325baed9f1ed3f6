// The remote stores' rounds (issue 18): for each store, its server started
// once (bench/servers.ts), then per round every tool with a backend for it
// (coffer and restic; the first tool rotating) gets a fresh repository and
// HOME: first backup, no-change backup and restore of the tree, then the big
// file's backup and restore into a repository of its own. Each repository
// is removed once its phases are done, so the memstore OSD holds at most a
// round's. Every restore is compared with what was backed up.

import * as fs from "node:fs";
import * as path from "node:path";
import type { Options } from "./options.ts";
import { log, rmrf } from "./process.ts";
import { makeTimer, rotation } from "./runs.ts";
import type { PageCache, RoundsResult } from "./runs.ts";
import { missingPackages, startServer } from "./servers.ts";
import type { RemoteServer } from "./servers.ts";
import { PHASE_LABEL, REMOTE_STORES, STORE_LABEL, backupCmd, hasRemoteBackends, initCmd, restoreCmd, restoredRoot, runCmd } from "./tools.ts";
import type { RemoteStore, Tool } from "./tools.ts";
import { fmtSecs } from "./units.ts";

export interface RemoteInput {
  opts: Options;
  work: string;
  /** The available tools, in the first round's order; those without a backend for the stores sit out. */
  tools: readonly Tool[];
  corpus: string;
  bigFile: string;
  cache: PageCache;
  /** The local rounds' result: the remote rounds add their restore checks and failures. */
  result: RoundsResult;
}

/** Of one store: its server, and how long it took to start and to run all its rounds (seconds). */
export interface RemoteRun {
  store: RemoteStore;
  description: string;
  startSeconds: number;
  seconds: number;
}

export async function runRemote(input: RemoteInput): Promise<RemoteRun[]> {
  const { opts, work } = input;
  const stores = REMOTE_STORES.filter((s) => opts.stores.includes(s));
  if (stores.length === 0) return [];
  const tools = input.tools.filter((t) => hasRemoteBackends(t.name));
  for (const t of input.tools) if (!hasRemoteBackends(t.name)) log(`${t.name}: no S3 or SFTP backend (its remote repositories need ${t.name} itself on the server): not in the remote rows`);
  const runs: RemoteRun[] = [];
  for (const store of stores) {
    const missing = missingPackages(store);
    if (missing.length > 0) {
      input.result.failures.push(`${STORE_LABEL[store]}: its server is not installed (apt-get install -y ${missing.join(" ")})`);
      log(`${STORE_LABEL[store]}: server not installed (${missing.join(" ")}): skipped`);
      continue;
    }
    log(`${STORE_LABEL[store]}: starting the server`);
    const t0 = performance.now();
    let server: RemoteServer;
    try {
      server = await startServer(store, work);
    } catch (e) {
      input.result.failures.push(`${STORE_LABEL[store]}: the server did not start: ${(e as Error).message}`);
      log(`${STORE_LABEL[store]}: the server did not start: ${(e as Error).message}`);
      continue;
    }
    const startSeconds = (performance.now() - t0) / 1000;
    log(`${STORE_LABEL[store]}: ${server.description} (started in ${fmtSecs(startSeconds)} s)`);
    try {
      await storeRounds(input, tools, server);
    } finally {
      await server.stop();
    }
    const seconds = (performance.now() - t0) / 1000;
    log(`${STORE_LABEL[store]}: done in ${fmtSecs(seconds)} s, server stopped`);
    runs.push({ store, description: server.description, startSeconds, seconds });
  }
  return runs;
}

/** One store's rounds; a tool that fails there sits out the rest of that store's rounds. */
async function storeRounds(input: RemoteInput, tools: readonly Tool[], server: RemoteServer): Promise<void> {
  const { opts, work, corpus, bigFile, cache, result } = input;
  const { store } = server;
  const failed = new Set<Tool>();
  const { fail, timed, checkRestore } = makeTimer(work, cache, result, (t) => failed.add(t));
  const live = (order: readonly Tool[]): Tool[] => order.filter((t) => !failed.has(t));
  const restoreDir = path.join(work, "restore");
  const fresh = (): string => {
    rmrf(restoreDir);
    fs.mkdirSync(restoreDir);
    return restoreDir;
  };

  for (let round = 1; round <= opts.rounds; round++) {
    const order = rotation(tools, round);
    log(`${STORE_LABEL[store]} round ${round}/${opts.rounds}: order ${order.map((t) => t.name).join(", ")}`);
    const name = (t: Tool, what = ""): string => `${t.name}-r${round}${what}`;
    for (const t of order) {
      rmrf(t.home);
      fs.mkdirSync(t.home, { recursive: true });
      const r = await runCmd(t, initCmd(t, server.repo(name(t))));
      if (r.code !== 0) fail(t, `${STORE_LABEL[store]} repository init (round ${round})`, r);
    }
    for (const t of live(order)) await timed(t, `${store}-first`, round, backupCmd(t, server.repo(name(t)), work, "corpus", "first"));
    for (const t of live(order)) await timed(t, `${store}-nochange`, round, backupCmd(t, server.repo(name(t)), work, "corpus", "nochange"));
    for (const t of live(order)) {
      const dir = fresh();
      if (await timed(t, `${store}-restore`, round, restoreCmd(t, server.repo(name(t)), dir))) {
        await checkRestore(t, round, PHASE_LABEL[`${store}-restore`], corpus, restoredRoot(t, dir, "corpus"));
      }
    }
    rmrf(restoreDir);
    for (const t of order) await server.purge(name(t));

    if (opts.bigSize > 0) {
      for (const t of live(order)) {
        const repo = server.repo(name(t, "-big"));
        const r = await runCmd(t, initCmd(t, repo));
        if (r.code !== 0) {
          fail(t, `${STORE_LABEL[store]} big-file repository init (round ${round})`, r);
          continue;
        }
        if (await timed(t, `${store}-bigbackup`, round, backupCmd(t, repo, work, "big", "big"))) {
          const dir = fresh();
          if (await timed(t, `${store}-bigrestore`, round, restoreCmd(t, repo, dir))) {
            await checkRestore(t, round, PHASE_LABEL[`${store}-bigrestore`], bigFile, path.join(restoredRoot(t, dir, "big"), path.basename(bigFile)));
          }
          rmrf(restoreDir);
        }
        await server.purge(name(t, "-big"));
      }
    }
    for (const t of order) rmrf(t.home);
  }
}

