/** `coffer check`: verify the repository and name every damaged snapshot and file. */
import { Command } from "commander";
import { check } from "../../snapshot/check.js";
import { resolveSnapshot } from "../../snapshot/vfs.js";
import { type Context, withRepository } from "../context.js";
import { say, shown } from "../format.js";

export async function runCheck(snaps: string[], o: { fast?: boolean; json?: boolean }, ctx: Context): Promise<number> {
  return withRepository(ctx, { readOnly: true }, async (repo) => {
    const ids = snaps.length ? await Promise.all(snaps.map(async (s) => (await resolveSnapshot(repo, s, ctx.signal)).id)) : undefined;
    const r = await check(repo, { fast: o.fast ?? false, signal: ctx.signal, ...(ids ? { snapshots: ids } : {}) });
    if (o.json) ctx.stdout.write(`${JSON.stringify(r)}\n`);
    else {
      for (const p of r.problems) {
        const where = p.snapshot ? `snapshot ${p.snapshot.slice(0, 8)}${p.path ? `: ${shown(p.path)}` : ""}: ` : "";
        say(ctx.stdout, `error: ${where}${p.message}`);
      }
      say(
        ctx.stdout,
        `checked ${r.snapshots} snapshots, ${r.packs} packfiles, ${r.blobs} blobs${o.fast ? " (fast: content not read)" : ""}: ` +
          `${r.problems.length ? `${r.problems.length} problems` : "no problems"}` +
          `${r.unreferencedPacks ? `; ${r.unreferencedPacks} unreferenced packfiles (left by an interrupted backup)` : ""}`,
      );
    }
    return r.problems.length ? 1 : 0;
  });
}

export function checkCommand(ctx: () => Context, done: (code: number) => void): Command {
  return new Command("check")
    .description("verify that snapshots are complete and, without --fast, that every blob is intact")
    .argument("[snap...]", "snapshots to check (default: all)")
    .option("--fast", "check presence only, without reading content")
    .option("--json", "print a JSON report")
    .action(async (snaps: string[], o: { fast?: boolean; json?: boolean }) => done(await runCheck(snaps, o, ctx())));
}
