/** `coffer cat SNAP:PATH`: write a file's content to stdout. */
import { once } from "node:events";
import { Command } from "commander";
import { fileBytes } from "../../snapshot/restore/content.js";
import { resolveSnapshot } from "../../snapshot/snapshots.js";
import { lookupOrThrow, TreeReader } from "../../snapshot/tree-reader.js";
import { CofferError } from "../../util/errors.js";
import { type Context, withRepository } from "../context.js";
import { parseSnapshotTarget } from "../snapshot-target.js";

async function runCat(target: string, ctx: Context): Promise<void> {
  const { snapshot, path } = parseSnapshotTarget(target);
  if (!target.includes(":") || path === "/") throw new CofferError("USAGE", `cat needs SNAP:PATH naming a file, not ${JSON.stringify(target)}`);
  await withRepository(ctx, { readOnly: true }, async (repo) => {
    const header = await resolveSnapshot(repo, snapshot, ctx.signal);
    const { entry: e } = await lookupOrThrow(new TreeReader(repo), header, path, ctx.signal);
    if (e.info.kind !== "file") throw new CofferError("USAGE", `${path} is a ${e.info.kind}, not a regular file`);
    if (e.error !== undefined) throw new CofferError("NOT_FOUND", `${path} was not backed up: ${e.error}`);
    for await (const b of fileBytes(repo, e, ctx.signal)) {
      if (!ctx.stdout.write(b)) await once(ctx.stdout, "drain");
    }
  });
}

export function catCommand(ctx: () => Context): Command {
  return new Command("cat")
    .description("write the content of a file in a snapshot to stdout")
    .argument("<snap:path>", "snapshot ID prefix and path")
    .action(async (target: string) => runCat(target, ctx()));
}
