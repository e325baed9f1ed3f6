/** `coffer restore`: write a snapshot (or part of it) to a directory. */
import { lstat } from "node:fs/promises";
import { resolve } from "node:path";
import { Command } from "commander";
import { FsExporter } from "../../connectors/fs/exporter.js";
import { restore } from "../../snapshot/restore.js";
import { parseSnapPath, resolveSnapshot } from "../../snapshot/vfs.js";
import { CofferError } from "../../util/errors.js";
import { type Context, withRepository } from "../context.js";
import { bytes, shortId } from "../format.js";

export interface RestoreCmdOptions {
  to?: string;
  json?: boolean;
  quiet?: boolean;
}

export async function runRestore(target: string | undefined, o: RestoreCmdOptions, ctx: Context): Promise<number> {
  const { snap, path } = parseSnapPath(target);
  return withRepository(ctx, { readOnly: true }, async (repo) => {
    const header = await resolveSnapshot(repo, snap, ctx.signal);
    const dir = resolve(o.to ?? process.cwd());
    const st = await lstat(dir).catch(() => null);
    if (st && !st.isDirectory()) throw new CofferError("USAGE", `cannot restore into ${dir}: it exists and is not a directory`);
    const exporter = new FsExporter(dir, { onWarning: (m: string) => ctx.stderr.write(`coffer: warning: ${m}\n`) });
    await exporter.ping();
    const r = await restore(repo, header, path, exporter, {
      signal: ctx.signal,
      onEvent: (e) => {
        if (e.type === "error") ctx.stderr.write(`coffer: cannot restore ${e.path}: ${e.message}\n`);
        else if (e.type === "skipped" && !o.quiet) ctx.stderr.write(`coffer: skipped ${e.path}: ${e.message}\n`);
      },
    });
    await exporter.close();
    if (o.json) ctx.stdout.write(`${JSON.stringify({ snapshot: shortId(header.id), to: dir, ...r, errors: r.errors.map(([p, m]) => ({ path: p, error: m })) })}\n`);
    else if (!o.quiet) {
      ctx.stderr.write(`restored ${r.files} files, ${r.dirs} dirs, ${bytes(r.bytes)} from ${shortId(header.id)} to ${dir}${r.errors.length ? `; ${r.errors.length} errors` : ""}\n`);
    }
    return r.errors.length > 0 ? 3 : 0;
  });
}

export function restoreCommand(ctx: () => Context, done: (code: number) => void): Command {
  return new Command("restore")
    .description("restore SNAP[:PATH] (default: the latest snapshot) into a directory")
    .argument("[snap]", "snapshot ID prefix, optionally with :PATH")
    .option("--to <dir>", "target directory (default: the current directory)")
    .option("-q, --quiet", "print nothing but errors")
    .option("--json", "print a JSON summary")
    .action(async (target: string | undefined, o: RestoreCmdOptions) => done(await runRestore(target, o, ctx())));
}
