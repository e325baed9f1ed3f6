/**
 * `coffer [at REPO] sync SNAP... to OTHER` and `coffer [at REPO] sync from
 * OTHER [SNAP...]`: copies snapshots between repositories (src/snapshot/sync).
 * Both hold shared locks; a source that cannot be written is read without one.
 */
import { Command } from "commander";
import type { Repository } from "../../repository/repository.js";
import type { SnapshotHeader } from "../../snapshot/header.js";
import { sync, type SyncResult } from "../../snapshot/sync/sync.js";
import { CofferError, isCofferError } from "../../util/errors.js";
import { toHex } from "../../util/hex.js";
import { type Context, type OtherRepository, openRepository, otherPassphrase } from "../context.js";
import { ExitCode } from "../exit-codes.js";
import { bytes, say, shortId, shown } from "../format.js";
import { parseSnapshotSelector } from "../snapshot-target.js";

interface SyncCmdOptions {
  otherPassphraseFile?: string;
  json?: boolean;
  quiet?: boolean;
}

/** What the words after `sync` ask: the direction, the other repository's location and the snapshots named. */
interface SyncRequest {
  direction: "to" | "from";
  other: string;
  snaps: string[];
}

function parseRequest(words: string[]): SyncRequest {
  if (words[0] === "from") {
    if (words.length < 2) throw new CofferError("USAGE", "sync from OTHER [SNAP...]: the other repository is missing");
    return { direction: "from", other: words[1]!, snaps: words.slice(2) };
  }
  const to = words.lastIndexOf("to");
  if (to < 0 || to !== words.length - 2) throw new CofferError("USAGE", "usage: sync SNAP... to OTHER, or sync from OTHER [SNAP...]");
  if (to === 0) throw new CofferError("USAGE", "sync ... to OTHER: name the snapshots to copy (`latest` names the latest)");
  return { direction: "to", other: words[to + 1]!, snaps: words.slice(0, to) };
}

/** Opens a repository to read snapshots from: for writing where it can be (to hold a shared lock), else read-only without a lock. */
async function openSource(ctx: Context, other: OtherRepository | undefined): Promise<Repository> {
  try {
    const repo = await openRepository(ctx, { ...(other ? { other } : {}) });
    try {
      await repo.acquire("shared", "sync", (m) => say(ctx.stderr, `coffer: warning: ${m}`));
    } catch (e) {
      await repo.close();
      throw e;
    }
    return repo;
  } catch (e) {
    if (!isCofferError(e, "READ_ONLY")) throw e;
    return openRepository(ctx, { readOnly: true, ...(other ? { other } : {}) });
  }
}

async function runSync(words: string[], o: SyncCmdOptions, ctx: Context): Promise<ExitCode> {
  const req = parseRequest(words);
  const selectors = req.snaps.map(parseSnapshotSelector);
  const other: OtherRepository = { location: req.other, passphrase: otherPassphrase(o.otherPassphraseFile) };
  const source = await openSource(ctx, req.direction === "from" ? other : undefined);
  try {
    const dest = await openRepository(ctx, req.direction === "to" ? { other } : {});
    try {
      if (Buffer.compare(source.config.id, dest.config.id) === 0) throw new CofferError("USAGE", "the source and the destination are the same repository");
      await dest.acquire("shared", "sync", (m) => say(ctx.stderr, `coffer: warning: ${m}`));
      const { adopted, missing } = await dest.reconcilePacks(ctx.signal);
      if (adopted > 0 && !o.quiet && !o.json) say(ctx.stderr, `coffer: indexed ${adopted} packfiles no state delta named (left by an interrupted backup or sync)`);
      for (const hex of missing) say(ctx.stderr, `coffer: warning: packfile ${hex} is missing from the store: the blobs it held are stored again`);
      const result = await sync(source, dest, {
        selectors,
        signal: ctx.signal,
        tmpDir: ctx.tmpDir,
        onEvent: (e) => {
          if (e.type === "unreadable") say(ctx.stderr, `coffer: warning: snapshot ${toHex(e.id).slice(0, 8)} of the destination cannot be read (${e.message}): were it a copy, its source is copied again`);
          else if (e.type !== "backup") {
            if (!o.quiet && !o.json) say(ctx.stderr, progressLine(e.type, e.source, e.copy));
          } else if (e.event.type === "warning") say(ctx.stderr, `coffer: warning: ${shown(e.event.path)}: ${e.event.message}`);
        },
      });
      await dest.recordDamage(ctx.signal);
      report(result, o, ctx);
      return result.unreadable.length > 0 ? ExitCode.PARTIAL : ExitCode.OK;
    } finally {
      await dest.close();
    }
  } finally {
    await source.close();
  }
}

function progressLine(what: "copied" | "skipped", s: SnapshotHeader, copy: SnapshotHeader): string {
  if (what === "skipped") return `${shortId(s.id)}: skipped, already held as ${shortId(copy.id)}`;
  const m = copy.summary;
  return `${shortId(s.id)}: copied as ${shortId(copy.id)}: ${m.files} files, ${m.dirs} dirs, ${bytes(m.bytes)}; read ${bytes(m.readBytes)}, added ${bytes(m.newBytes)}` + (m.errors ? `; ${m.errors} entries failed in the source` : "");
}

function report(r: SyncResult, o: SyncCmdOptions, ctx: Context): void {
  for (const u of r.unreadable) say(ctx.stderr, `coffer: snapshot ${toHex(u.id).slice(0, 8)} of the source: ${u.message}: not copied`);
  if (o.json) {
    const snapshots = r.snapshots.map((s) => ({
      source: toHex(s.source.id),
      copy: toHex(s.copy.id),
      skipped: s.skipped,
      ...(s.skipped ? {} : { newBlobs: s.copy.summary.newBlobs, newBytes: s.copy.summary.newBytes, readBytes: s.copy.summary.readBytes }),
    }));
    const copied = r.snapshots.filter((s) => !s.skipped);
    const newBytes = copied.reduce((n, s) => n + s.copy.summary.newBytes, 0);
    ctx.stdout.write(`${JSON.stringify({ snapshots, copied: copied.length, skipped: r.snapshots.length - copied.length, newBytes, unreadable: r.unreadable.map((u) => toHex(u.id)) })}\n`);
    return;
  }
  for (const s of r.snapshots) if (!s.skipped) ctx.stdout.write(`${shortId(s.copy.id)}\n`);
}

export function syncCommand(ctx: () => Context, done: (code: ExitCode) => void): Command {
  return new Command("sync")
    .description("copy snapshots to or from another repository (other keys and chunking allowed); snapshots it already holds are skipped")
    .usage("SNAP... to OTHER | from OTHER [SNAP...]")
    .argument("<words...>", "`SNAP... to OTHER` (SNAP: an ID prefix or `latest`) or `from OTHER [SNAP...]` (none: every complete snapshot); OTHER is a location as `at` takes it")
    .option("--other-passphrase-file <file>", "read the other repository's passphrase from a file (else $COFFER_OTHER_PASSPHRASE, else a prompt)")
    .option("-q, --quiet", "print only the IDs of the copies made")
    .option("--json", "print a JSON summary")
    .action(async (words: string[], o: SyncCmdOptions) => done(await runSync(words, o, ctx())));
}
