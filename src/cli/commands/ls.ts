/** `coffer ls`: list snapshots, or the entries of a directory in a snapshot. */
import { Command } from "commander";
import { listRemoved } from "../../snapshot/removal.js";
import { listSnapshots, resolveSnapshot } from "../../snapshot/snapshots.js";
import { joinPath, lookupOrThrow, TreeReader } from "../../snapshot/tree-reader.js";
import type { Entry } from "../../snapshot/tree.js";
import type { Repository } from "../../repository/repository.js";
import type { RemovalRecord } from "../../repository/state.js";
import { CofferError } from "../../util/errors.js";
import { toHex } from "../../util/hex.js";
import { type Context, withRepository } from "../context.js";
import { ExitCode } from "../exit-codes.js";
import { bytes, entryJson, localTime, modeString, say, shortId, shown, shownSource, snapshotJson } from "../format.js";
import { parseSnapshotTarget } from "../snapshot-target.js";

interface LsOptions {
  recursive?: boolean;
  json?: boolean;
  long?: boolean;
  removed?: boolean;
}

/** Lists snapshots, or a directory's entries; exits 3 when a snapshot's header cannot be read (each is named). */
async function runLs(target: string | undefined, o: LsOptions, ctx: Context): Promise<ExitCode> {
  return withRepository(ctx, { readOnly: true }, async (repo) => {
    const out = ctx.stdout;
    if (o.removed) {
      if (target !== undefined || o.recursive) throw new CofferError("USAGE", "ls --removed lists removed snapshots: it takes no SNAP and no -R");
      return listRemovedSnapshots(repo, o, ctx);
    }
    if (target === undefined) {
      const { snapshots: all, unreadable } = await listSnapshots(repo, ctx.signal);
      if (o.json) out.write(`${JSON.stringify(all.map(snapshotJson))}\n`);
      else {
        for (const h of all) {
          const tags = (h.tags.length ? `  [${h.tags.map(shown).join(",")}]` : "") + (h.checkpoint !== undefined ? "  (partial: interrupted backup)" : "");
          say(out, `${shortId(h.id)}  ${localTime(h.timeNs)}  ${shown(h.hostname)}  ${bytes(h.summary.bytes).padStart(10)}  ${shownSource(h)}${tags}`);
        }
      }
      for (const u of unreadable) say(ctx.stderr, `coffer: snapshot ${toHex(u.id)} cannot be read: ${u.message}`);
      return unreadable.length > 0 ? ExitCode.PARTIAL : ExitCode.OK;
    }
    const { snapshot, path: asTyped } = parseSnapshotTarget(target);
    const header = await resolveSnapshot(repo, snapshot, ctx.signal);
    const reader = new TreeReader(repo);
    const { entry: top, path } = await lookupOrThrow(reader, header, asTyped, ctx.signal);
    const rows: Record<string, unknown>[] = [];
    const show = (p: string, e: Entry) => {
      if (o.json) rows.push(entryJson(p, e));
      else {
        const owner = `${e.info.username ?? e.info.uid}/${e.info.groupname ?? e.info.gid}`;
        const link = e.target !== undefined ? ` -> ${shown(e.target)}` : "";
        say(out, `${modeString(e)} ${shown(owner).padEnd(15)} ${String(e.info.size).padStart(12)} ${localTime(e.info.mtimeNs)} ${shown(p)}${link}`);
      }
    };
    if (top.info.kind !== "dir") show(path, top);
    else if (o.recursive) {
      for await (const { path: p, entry } of reader.walk(top, path, ctx.signal)) if (p !== path) show(p, entry);
    } else {
      for (const c of await reader.children(top, ctx.signal)) show(joinPath(path, c.name), c);
    }
    if (o.json) out.write(`${JSON.stringify(rows)}\n`);
    return ExitCode.OK;
  });
}

/** `ls --removed`: the snapshots whose removal is in force, with when and why, for `undelete`. */
async function listRemovedSnapshots(repo: Repository, o: LsOptions, ctx: Context): Promise<ExitCode> {
  const removed = await listRemoved(repo, ctx.signal);
  const removal = (r: RemovalRecord) => ({ time: new Date(r.timeMs).toISOString(), why: r.why });
  if (o.json) {
    const rows = removed.map((r) => ({
      ...(r.header ? snapshotJson(r.header) : { id: toHex(r.id), short: shortId(r.id), unreadable: r.unreadable }),
      removed: removal(r.record),
    }));
    ctx.stdout.write(`${JSON.stringify(rows)}\n`);
    return ExitCode.OK;
  }
  for (const r of removed) {
    const h = r.header;
    const what = h ? `${localTime(h.timeNs)}  ${shown(h.hostname)}  ${bytes(h.summary.bytes).padStart(10)}  ${shownSource(h)}` : `(${shown(r.unreadable ?? "")})`;
    say(ctx.stdout, `${shortId(r.id)}  ${what}  removed ${localTime(BigInt(r.record.timeMs) * 1_000_000n)}: ${shown(r.record.why)}`);
  }
  return ExitCode.OK;
}

export function lsCommand(ctx: () => Context, done: (code: ExitCode) => void): Command {
  return new Command("ls")
    .description("list snapshots, or the entries of SNAP[:PATH]")
    .argument("[snap]", "snapshot ID prefix, optionally with :PATH")
    .option("-R, --recursive", "list the whole subtree")
    .option("--removed", "list removed snapshots (for `undelete`) instead")
    .option("--json", "print JSON")
    .action(async (target: string | undefined, o: LsOptions) => done(await runLs(target, o, ctx())));
}
