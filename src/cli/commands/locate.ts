/** `coffer locate PATTERN...`: which snapshots hold paths matching glob patterns, grouped by path. */
import { Command } from "commander";
import type { SnapshotHeader } from "../../snapshot/header.js";
import { Locator } from "../../snapshot/locate.js";
import { listSnapshots, resolveSnapshot } from "../../snapshot/snapshots.js";
import type { Entry } from "../../snapshot/tree.js";
import { CofferError } from "../../util/errors.js";
import { compileGlob } from "../../util/glob.js";
import { toHex } from "../../util/hex.js";
import { compareNames, isRawName, lossyName, nameToBytes } from "../../util/names.js";
import { type Context, withRepository } from "../context.js";
import { ExitCode } from "../exit-codes.js";
import { isoTime, localTime, say, shortId, shown } from "../format.js";
import { parseSnapshotSelector } from "../snapshot-target.js";

interface LocateOptions {
  snapshot?: string[];
  latest?: string;
  json?: boolean;
}

/** Finds the matches of every pattern in the chosen snapshots; exits 3 when a snapshot's header cannot be read (each is named). */
async function runLocate(patterns: string[], o: LocateOptions, ctx: Context): Promise<ExitCode> {
  const globs = patterns.map(compileGlob);
  const latest = o.latest === undefined ? undefined : Number(o.latest);
  if (latest !== undefined && !(Number.isSafeInteger(latest) && latest > 0)) throw new CofferError("USAGE", `--latest takes a positive number, not ${JSON.stringify(o.latest)}`);
  return withRepository(ctx, { readOnly: true }, async (repo) => {
    let snapshots: SnapshotHeader[];
    let unreadable = 0;
    if (o.snapshot && o.snapshot.length > 0) {
      const chosen = new Map<string, SnapshotHeader>();
      for (const s of o.snapshot) {
        const h = await resolveSnapshot(repo, parseSnapshotSelector(s), ctx.signal);
        chosen.set(toHex(h.id), h);
      }
      snapshots = [...chosen.values()];
      snapshots.sort((a, b) => (a.timeNs < b.timeNs ? -1 : a.timeNs > b.timeNs ? 1 : 0));
    } else {
      const list = await listSnapshots(repo, ctx.signal);
      snapshots = list.snapshots;
      for (const u of list.unreadable) say(ctx.stderr, `coffer: snapshot ${toHex(u.id)} cannot be read: ${u.message}`);
      unreadable = list.unreadable.length;
    }
    if (latest !== undefined) snapshots = snapshots.slice(-latest);
    const locator = new Locator(repo, globs, { signal: ctx.signal });
    const byPath = new Map<string, { header: SnapshotHeader; entry: Entry }[]>();
    for (const h of snapshots) {
      for (const m of await locator.find(h.root)) {
        const seen = byPath.get(m.path);
        if (seen) seen.push({ header: h, entry: m.entry });
        else byPath.set(m.path, [{ header: h, entry: m.entry }]);
      }
    }
    const paths = [...byPath.keys()].sort(compareNames);
    const out = ctx.stdout;
    if (o.json) {
      const rows = paths.map((p) => ({
        path: lossyName(p),
        ...(isRawName(p) ? { raw_path: nameToBytes(p).toString("base64") } : {}),
        snapshots: byPath.get(p)!.map(({ header: h, entry: e }) => ({ id: toHex(h.id), short: shortId(h.id), time: isoTime(h.timeNs), type: e.info.kind, size: e.info.size, mtime: isoTime(e.info.mtimeNs) })),
      }));
      out.write(`${JSON.stringify(rows)}\n`);
    } else {
      for (const p of paths) {
        say(out, shown(p));
        for (const { header: h, entry: e } of byPath.get(p)!) say(out, `  ${shortId(h.id)}  ${localTime(h.timeNs)}  ${e.info.kind.padEnd(7)} ${String(e.info.size).padStart(12)}  ${localTime(e.info.mtimeNs)}`);
      }
    }
    return unreadable > 0 ? ExitCode.PARTIAL : ExitCode.OK;
  });
}

export function locateCommand(ctx: () => Context, done: (code: ExitCode) => void): Command {
  return new Command("locate")
    .description("list the snapshots that hold paths matching glob PATTERNs")
    .argument("<pattern...>", "glob: * ? [...] **; matched against the name, or the full path when it holds /")
    .option("--snapshot <snap>", "search this snapshot (repeatable; default: every snapshot)", (v: string, p: string[] | undefined) => [...(p ?? []), v])
    .option("--latest <n>", "search only the N newest of those snapshots")
    .option("--json", "print JSON")
    .action(async (patterns: string[], o: LocateOptions) => done(await runLocate(patterns, o, ctx())));
}
