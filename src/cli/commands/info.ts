/** `coffer info [SNAP]`: the repository's configuration, or a snapshot's header and summary. */
import { Command } from "commander";
import { resolveSnapshot } from "../../snapshot/snapshots.js";
import { toHex } from "../../util/hex.js";
import { type Context, repositoryLocation, withRepository } from "../context.js";
import { bytes, isoTime, say, shown, shownSource, snapshotJson } from "../format.js";
import { parseSnapshotSelector } from "../snapshot-target.js";

async function runInfo(snap: string | undefined, o: { json?: boolean }, ctx: Context): Promise<void> {
  const snapshot = snap === undefined ? undefined : parseSnapshotSelector(snap);
  await withRepository(ctx, { readOnly: true }, async (repo) => {
    const w = (s: string) => say(ctx.stdout, s);
    if (snapshot === undefined) {
      const c = repo.config;
      const size = await repo.store.size();
      const info = {
        location: repositoryLocation(ctx),
        id: toHex(c.id),
        version: c.version,
        created: isoTime(c.createdNs),
        encryption: c.encryption ? `${c.encryption.cipher}, argon2id m=${c.encryption.kdf.memory / 1024}MiB t=${c.encryption.kdf.passes} p=${c.encryption.kdf.parallelism}` : "none (plaintext)",
        mac: c.mac,
        compression: c.compression,
        chunking: c.chunking,
        packSize: c.packSize,
        snapshots: repo.index.snapshots.size,
        packfiles: repo.index.packs.size,
        blobs: repo.index.size,
        size,
      };
      if (o.json) return void ctx.stdout.write(`${JSON.stringify(info)}\n`);
      w(`repository   ${shown(info.location)}`);
      w(`id           ${info.id}`);
      w(`format       version ${info.version}, created ${info.created}`);
      w(`encryption   ${info.encryption}`);
      w(`mac          ${info.mac}`);
      w(`compression  ${info.compression}`);
      w(`chunking     FastCDC min ${bytes(c.chunking.min)} avg ${bytes(c.chunking.avg)} max ${bytes(c.chunking.max)}`);
      w(`snapshots    ${info.snapshots}`);
      w(`packfiles    ${info.packfiles} (${info.blobs} blobs)`);
      w(`size         ${size >= 0 ? bytes(size) : "unknown"}`);
      return;
    }
    const h = await resolveSnapshot(repo, snapshot, ctx.signal);
    const j = snapshotJson(h);
    if (o.json) return void ctx.stdout.write(`${JSON.stringify(j)}\n`);
    const s = h.summary;
    w(`snapshot     ${toHex(h.id)}`);
    w(`time         ${isoTime(h.timeNs)} (took ${(Number(h.durationNs) / 1e9).toFixed(2)}s)`);
    w(`host         ${shown(h.hostname)} (${h.os}/${h.arch}), user ${shown(h.username)}`);
    w(`source       ${shownSource(h)} (importer ${h.importer.type}, origin ${shown(h.importer.origin)})`);
    w(`tags         ${h.tags.map(shown).join(", ") || "-"}`);
    if (h.parent) w(`parent       ${toHex(h.parent).slice(0, 8)}`);
    if (h.checkpoint !== undefined) w(`partial      checkpoint ${h.checkpoint} of a backup (run ${toHex(h.run!).slice(0, 8)}): holds what was stored before it stopped`);
    w(`contents     ${s.files} files, ${s.dirs} dirs, ${s.symlinks} symlinks, ${s.others} others, ${bytes(s.bytes)}`);
    w(`backup       read ${bytes(s.readBytes)}, added ${s.newBlobs} blobs (${bytes(s.newBytes)})`);
    w(`errors       ${s.errors}`);
  });
}

export function infoCommand(ctx: () => Context): Command {
  return new Command("info")
    .description("show the repository, or a snapshot's header and summary")
    .argument("[snap]", "snapshot ID prefix")
    .option("--json", "print JSON")
    .action(async (snap: string | undefined, o: { json?: boolean }) => runInfo(snap, o, ctx()));
}
