/**
 * `coffer undelete SNAP`: takes back the removal of a snapshot (src/snapshot/
 * removal.ts) while every blob it references is still in the repository;
 * once maintenance has reclaimed or marked some, it fails with exit code 5 naming them.
 */
import { Command } from "commander";
import { undeleteSnapshot } from "../../snapshot/removal.js";
import { CofferError } from "../../util/errors.js";
import { toHex } from "../../util/hex.js";
import { type Context, withRepository } from "../context.js";
import { say, shortId, shown } from "../format.js";

interface UndeleteOptions {
  json?: boolean;
}

async function runUndelete(snap: string, o: UndeleteOptions, ctx: Context): Promise<void> {
  if (!/^[0-9a-f]+$/i.test(snap)) throw new CofferError("USAGE", `not a snapshot ID prefix: ${JSON.stringify(snap)} (hex digits expected)`);
  await withRepository(ctx, {}, async (repo) => {
    const r = await undeleteSnapshot(repo, snap, { command: "undelete", signal: ctx.signal, onWarning: (m) => say(ctx.stderr, `coffer: warning: ${m}`) });
    const removedAt = new Date(r.removal.timeMs).toISOString();
    if (o.json) ctx.stdout.write(`${JSON.stringify({ id: toHex(r.id), short: shortId(r.id), removedAt, removedWhy: r.removal.why })}\n`);
    else say(ctx.stdout, `undeleted ${shortId(r.id)} (removed at ${removedAt}: ${shown(r.removal.why)})`);
  });
}

export function undeleteCommand(ctx: () => Context): Command {
  return new Command("undelete")
    .description("take back the removal of a snapshot, until maintenance reclaims its data")
    .argument("<snap>", "the removed snapshot's ID prefix")
    .option("--json", "print JSON")
    .action(async (snap: string, o: UndeleteOptions) => runUndelete(snap, o, ctx()));
}
