/** `coffer restore`: write a snapshot (or part of it) to a directory. */
import { lstat } from "node:fs/promises";
import { Command } from "commander";
import { parseOptions } from "../../connectors/params.js";
import type { Exporter } from "../../connectors/records.js";
import { restore } from "../../snapshot/restore/restore.js";
import { resolveSnapshot, type SnapshotSelector } from "../../snapshot/snapshots.js";
import { lookupOrThrow, TreeReader } from "../../snapshot/tree-reader.js";
import { CofferError } from "../../util/errors.js";
import { connectorOptions, type Context, withRepository } from "../context.js";
import { ExitCode } from "../exit-codes.js";
import { useDefaultHeapGrowth } from "../launch.js";
import { bytes, say, shortId, shown } from "../format.js";
import { parseSnapshotTarget } from "../snapshot-target.js";

interface RestoreCmdOptions {
  to?: string;
  json?: boolean;
  quiet?: boolean;
  option?: string[];
  force?: boolean;
}

async function runRestore(target: string | undefined, o: RestoreCmdOptions, ctx: Context): Promise<ExitCode> {
  useDefaultHeapGrowth();
  const { snapshot, path } = parseSnapshotTarget(target);
  const exporter = await ctx.registry.make("exporter", o.to ?? ctx.cwd, parseOptions(o.option), connectorOptions(ctx, { overwrite: o.force === true }));
  try {
    return await restoreTo(exporter, snapshot, path, o, ctx);
  } finally {
    await exporter.close();
  }
}

async function restoreTo(exporter: Exporter, snapshot: SnapshotSelector, path: string, o: RestoreCmdOptions, ctx: Context): Promise<ExitCode> {
  return withRepository(ctx, { readOnly: true }, async (repo) => {
    const header = await resolveSnapshot(repo, snapshot, ctx.signal);
    // A path that is not there fails before anything is created (ping() makes the directory).
    await lookupOrThrow(new TreeReader(repo), header, path, ctx.signal);
    const dir = exporter.root;
    if (exporter.type === "fs") {
      const st = await lstat(dir).catch(() => null);
      if (st && !st.isDirectory()) throw new CofferError("USAGE", `cannot restore into ${dir}: it exists and is not a directory`);
    }
    await exporter.ping();
    const r = await restore(repo, header, path, exporter, {
      signal: ctx.signal,
      onEvent: (e) => {
        if (e.type === "error") say(ctx.stderr, `coffer: cannot restore ${shown(e.path)}: ${e.message}`);
        else if (e.type === "skipped" && !o.quiet) say(ctx.stderr, `coffer: skipped ${shown(e.path)}: ${e.message}`);
      },
    });
    if (o.json) ctx.stdout.write(`${JSON.stringify({ snapshot: shortId(header.id), to: dir, ...r, errors: r.errors.map(([p, m]) => ({ path: p, error: m })) })}\n`);
    else if (!o.quiet) {
      say(ctx.stderr, `restored ${r.files} files, ${r.dirs} dirs, ${bytes(r.bytes)} from ${shortId(header.id)} to ${shown(dir)}${r.errors.length ? `; ${r.errors.length} errors` : ""}`);
    }
    return r.errors.length > 0 ? ExitCode.PARTIAL : ExitCode.OK;
  });
}

export function restoreCommand(ctx: () => Context, done: (code: ExitCode) => void): Command {
  return new Command("restore")
    .description("restore SNAP[:PATH] (default: the latest snapshot) into a directory")
    .argument("[snap]", "snapshot ID prefix, optionally with :PATH")
    .option("--to <location>", "where to restore: a directory (default: the current one), or PROTO:... (fs:, stdout:, tar:FILE, tar+gz:FILE, s3://BUCKET/PREFIX, sftp://HOST/PATH, an installed plugin)")
    .option("-o, --option <key=value>", "configure the exporter (repeatable)", (v: string, p: string[] | undefined) => [...(p ?? []), v])
    .option("--force", "replace the archive FILE of tar:FILE (tar+gz:FILE) if it exists")
    .option("-q, --quiet", "print nothing but errors")
    .option("--json", "print a JSON summary")
    .action(async (target: string | undefined, o: RestoreCmdOptions) => done(await runRestore(target, o, ctx())));
}
