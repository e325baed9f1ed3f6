/** `coffer backup`: snapshot a directory into the repository. */
import { readFile } from "node:fs/promises";
import { arch, hostname, platform, userInfo } from "node:os";
import { Command } from "commander";
import { LocationFlag } from "../../connectors/flags.js";
import { numericValue, parseOptions } from "../../connectors/params.js";
import { backup } from "../../snapshot/backup/backup.js";
import { type CheckpointPolicy, DEFAULT_CHECKPOINTS, NEEDACK_CHECKPOINTS } from "../../snapshot/backup/checkpointer.js";
import type { Importer } from "../../connectors/records.js";
import { parseRfc3339 } from "../../util/calendar.js";
import { CofferError } from "../../util/errors.js";
import { toHex } from "../../util/hex.js";
import { connectorOptions, type Context, userPath, withRepository } from "../context.js";
import { ExitCode } from "../exit-codes.js";
import { bytes, say, shortId, shown } from "../format.js";

interface BackupCmdOptions {
  tag?: string[];
  exclude?: string[];
  excludeFile?: string[];
  json?: boolean;
  xattr: boolean;
  force?: boolean;
  quiet?: boolean;
  option?: string[];
  checkpointInterval?: string;
  time?: string;
  host?: string;
}

interface BackupOutcome {
  exitCode: ExitCode;
}

async function runBackup(path: string | undefined, o: BackupCmdOptions, ctx: Context): Promise<BackupOutcome> {
  const excludes = [...(o.exclude ?? [])];
  for (const f of o.excludeFile ?? []) {
    let text: string;
    try {
      text = await readFile(userPath(ctx, f), "utf8");
    } catch (e) {
      throw new CofferError("USAGE", `cannot read exclude file ${f}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    excludes.push(...text.split(/\r?\n/).filter((l) => l.trim() !== "" && !l.startsWith("#")));
  }
  let interval: number | undefined;
  if (o.checkpointInterval !== undefined) {
    interval = numericValue("duration", o.checkpointInterval);
    if (!Number.isFinite(interval)) throw new CofferError("USAGE", `--checkpoint-interval must be a duration such as 30s or 5m, not ${JSON.stringify(o.checkpointInterval)}`);
  }
  const timeNs = o.time === undefined ? undefined : parseRfc3339(o.time);
  if (o.time !== undefined && timeNs === undefined) {
    throw new CofferError("USAGE", `--time must be an RFC 3339 timestamp with an offset or Z, such as 2026-03-01T02:00:00Z or 2026-03-01T03:00:00+01:00, not ${JSON.stringify(o.time)}`);
  }
  if (o.host !== undefined && o.host === "") throw new CofferError("USAGE", "--host must not be empty");
  const host = o.host ?? hostname();
  const importer = await ctx.registry.make("importer", path ?? ctx.cwd, parseOptions(o.option), connectorOptions(ctx, { excludes, noXattr: !o.xattr, hostname: host }));
  try {
    return await backupFrom(importer, o, { interval, timeNs, host }, ctx);
  } finally {
    await importer.close();
  }
}

/** What the options resolve to: the checkpoint interval, the time recorded and the host recorded. */
interface BackupSettings {
  interval: number | undefined;
  timeNs: bigint | undefined;
  host: string;
}

async function backupFrom(importer: Importer, o: BackupCmdOptions, { interval, timeNs, host }: BackupSettings, ctx: Context): Promise<BackupOutcome> {
  // The source first: a missing one fails before the passphrase is asked, and
  // an importer may start scanning while the repository opens.
  await importer.ping();
  return withRepository(ctx, {}, async (repo) => {
    await repo.acquire("shared", "backup", (m) => say(ctx.stderr, `coffer: warning: ${m}`));
    let checkpoints: CheckpointPolicy | undefined;
    if (interval !== undefined) {
      const base = importer.flags & LocationFlag.NEEDACK ? NEEDACK_CHECKPOINTS : DEFAULT_CHECKPOINTS;
      checkpoints = { intervalMs: interval, bytes: interval === 0 ? 0 : base.bytes };
    }
    const { adopted, missing } = await repo.reconcilePacks(ctx.signal);
    if (adopted > 0 && !o.quiet && !o.json) say(ctx.stderr, `coffer: indexed ${adopted} packfiles no state delta named (left by an interrupted backup)`);
    for (const hex of missing) say(ctx.stderr, `coffer: warning: packfile ${hex} is missing from the store: the blobs it held are stored again`);
    const { header } = await backup(repo, {
      importer,
      tags: o.tag ?? [],
      hostname: host,
      username: safeUser(),
      os: platform(),
      arch: arch(),
      signal: ctx.signal,
      force: o.force ?? false,
      checkpoints,
      tmpDir: ctx.tmpDir,
      timeNs,
      onEvent: (e) => {
        if (e.type === "failed" || e.type === "xattr-failed") say(ctx.stderr, `coffer: ${shown(e.path)}: ${e.message}`);
        else if (e.type === "warning") say(ctx.stderr, `coffer: warning: ${shown(e.path)}: ${e.message}`);
      },
    });
    // What this backup's own reads found damaged: later runs stop relying on it too.
    await repo.recordDamage(ctx.signal);
    const s = header.summary;
    if (o.json) {
      ctx.stdout.write(`${JSON.stringify({ id: toHex(header.id), short: shortId(header.id), ...s, durationSeconds: Number(header.durationNs) / 1e9 })}\n`);
    } else {
      if (!o.quiet) {
        say(
          ctx.stderr,
          `${s.files} files, ${s.dirs} dirs, ${bytes(s.bytes)}; read ${bytes(s.readBytes)}, added ${bytes(s.newBytes)} in ${(Number(header.durationNs) / 1e9).toFixed(1)}s` +
            (s.errors ? `; ${s.errors} errors` : ""),
        );
      }
      ctx.stdout.write(`${shortId(header.id)}\n`);
    }
    return { exitCode: s.errors > 0 ? ExitCode.PARTIAL : ExitCode.OK };
  });
}

function safeUser(): string {
  try {
    return userInfo().username;
  } catch {
    return String(process.getuid?.() ?? "");
  }
}

const collect = (v: string, prev: string[] | undefined) => [...(prev ?? []), v];

export function backupCommand(ctx: () => Context, done: (code: ExitCode) => void): Command {
  return new Command("backup")
    .description("back up LOCATION (default: the current directory) as a new snapshot")
    .argument("[location]", "what to back up: a directory, or PROTO:... (fs:, stdin:NAME, tar:FILE, tar+gz:FILE, s3://BUCKET/PREFIX, sftp://HOST/PATH, an installed plugin)")
    .option("-o, --option <key=value>", "configure the importer (repeatable)", collect)
    .option("--checkpoint-interval <duration>", "commit a partial snapshot this often (default 5s for sources that need acknowledgements, else 5m; 0 disables)")
    .option("--tag <tag>", "tag the snapshot (repeatable)", collect)
    .option("--time <timestamp>", "record the snapshot at this time (RFC 3339 with an offset or Z), e.g. when importing an old archive")
    .option("--host <name>", "record this host name instead of this machine's")
    .option("--exclude <pattern>", "exclude paths matching a gitignore-style pattern (repeatable)", collect)
    .option("--exclude-file <file>", "read exclude patterns from a file (repeatable)", collect)
    .option("--no-xattr", "do not record extended attributes")
    .option("--force", "read every file, even those unchanged since the last snapshot")
    .option("-q, --quiet", "print only the snapshot ID")
    .option("--json", "print a JSON summary")
    .action(async (path: string | undefined, o: BackupCmdOptions) => done((await runBackup(path, o, ctx())).exitCode));
}
