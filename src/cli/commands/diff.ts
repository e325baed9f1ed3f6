/** `coffer diff SNAP1[:PATH] SNAP2[:PATH]`: what changed from one snapshot (or directory in it) to another. */
import { Command } from "commander";
import { type Change, type DiffSide, SnapshotDiff } from "../../snapshot/diff.js";
import { resolveSnapshot } from "../../snapshot/snapshots.js";
import { lookupOrThrow, TreeReader } from "../../snapshot/tree-reader.js";
import { toHex } from "../../util/hex.js";
import { isRawName, lossyName, nameToBytes } from "../../util/names.js";
import { type Context, withRepository } from "../context.js";
import { ExitCode } from "../exit-codes.js";
import { bytes, say, shortId, shown } from "../format.js";
import { parseSnapshotTarget } from "../snapshot-target.js";

interface DiffCliOptions {
  metadata?: boolean;
  json?: boolean;
}

/** One NDJSON line of a change: `{type: "change", path, raw_path?, modifier, kind, was?}`. */
function changeJson(c: Change): Record<string, unknown> {
  const e = c.after ?? c.before!;
  return {
    type: "change",
    path: lossyName(c.path),
    ...(isRawName(c.path) ? { raw_path: nameToBytes(c.path).toString("base64") } : {}),
    modifier: c.modifier,
    kind: e.info.kind,
    ...(c.modifier === "T" ? { was: c.before!.info.kind } : {}),
  };
}

async function runDiff(first: string, second: string, o: DiffCliOptions, ctx: Context): Promise<ExitCode> {
  const a = parseSnapshotTarget(first);
  const b = parseSnapshotTarget(second);
  return withRepository(ctx, { readOnly: true }, async (repo) => {
    const ha = await resolveSnapshot(repo, a.snapshot, ctx.signal);
    const hb = await resolveSnapshot(repo, b.snapshot, ctx.signal);
    const reader = new TreeReader(repo, 16);
    const ea = (await lookupOrThrow(reader, ha, a.path, ctx.signal)).entry;
    const eb = (await lookupOrThrow(reader, hb, b.path, ctx.signal)).entry;
    const out = ctx.stdout;
    if (!o.json) {
      say(out, `comparing snapshot ${shortId(ha.id)} to ${shortId(hb.id)}:`);
      say(out, "");
    }
    const diff = new SnapshotDiff(repo, ea, eb, { metadata: o.metadata, signal: ctx.signal });
    for await (const c of diff.changes()) {
      if (o.json) out.write(`${JSON.stringify(changeJson(c))}\n`);
      else say(out, `${c.modifier.padEnd(5)}${shown(c.path)}`);
    }
    const s = diff.summary;
    if (o.json) {
      out.write(`${JSON.stringify({ type: "summary", from: toHex(ha.id), to: toHex(hb.id), changedFiles: s.changedFiles, added: s.added, removed: s.removed, markers: s.markers })}\n`);
      return ExitCode.OK;
    }
    const n = (v: number) => String(v).padStart(5);
    const line = (label: string, f: (d: DiffSide) => number) => `${label.padEnd(13)}${n(f(s.added))} new, ${n(f(s.removed))} removed`;
    say(out, "");
    say(out, `${line("Files:", (d) => d.files)}, ${n(s.changedFiles)} changed`);
    say(out, line("Dirs:", (d) => d.dirs));
    say(out, line("Others:", (d) => d.others));
    say(out, line("Data Blobs:", (d) => d.dataBlobs));
    say(out, line("Tree Blobs:", (d) => d.treeBlobs));
    const m = s.markers;
    say(out, `${"Changes:".padEnd(13)}+ ${m["+"]}, - ${m["-"]}, M ${m.M}, U ${m.U}, T ${m.T}, ? ${m["?"]}`);
    say(out, `  Added:   ${bytes(s.added.bytes)}`);
    say(out, `  Removed: ${bytes(s.removed.bytes)}`);
    return ExitCode.OK;
  });
}

export function diffCommand(ctx: () => Context, done: (code: ExitCode) => void): Command {
  return new Command("diff")
    .description("show what changed from SNAP1[:PATH] to SNAP2[:PATH]")
    .argument("<snap1>", "snapshot ID prefix, optionally with :PATH")
    .argument("<snap2>", "snapshot ID prefix, optionally with :PATH")
    .option("--metadata", "also list entries whose metadata alone changed (U)")
    .option("--json", "print NDJSON: one line per change, then a summary")
    .action(async (first: string, second: string, o: DiffCliOptions) => done(await runDiff(first, second, o, ctx())));
}
