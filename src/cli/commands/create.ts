/** `coffer create`: initialise a repository at the location. */
import { Command, Option } from "commander";
import { DEFAULT_KDF, MAX_KDF_MEMORY_KIB } from "../../repository/config.js";
import type { Store } from "../../connectors/store.js";
import { Repository } from "../../repository/repository.js";
import { CofferError } from "../../util/errors.js";
import { toHex } from "../../util/hex.js";
import { assertWritable, type Context, getPassphrase, knownRepositories, openStore, passphraseGiven, repositoryLocation } from "../context.js";
import { say, shown } from "../format.js";

interface CreateOptions {
  plaintext?: boolean;
  hashing: "blake3" | "sha256";
  compression: "zstd" | "none";
  kdfMemory?: number;
  kdfPasses?: number;
  json?: boolean;
}

async function runCreate(o: CreateOptions, ctx: Context): Promise<void> {
  const location = repositoryLocation(ctx);
  const store = await openStore(ctx, location);
  try {
    await assertWritable(store, location, ctx.signal);
    await createIn(store, location, o, ctx);
  } finally {
    await store.close();
  }
}

async function createIn(store: Store, location: string, o: CreateOptions, ctx: Context): Promise<void> {
  let passphrase: Uint8Array | null = null;
  const given = o.plaintext ? passphraseGiven(ctx) : null;
  if (!o.plaintext) {
    passphrase = await getPassphrase(ctx, true);
    if (passphrase === null) {
      throw new CofferError("NO_PASSPHRASE", "no passphrase: give --keyfile FILE or COFFER_PASSPHRASE, or run on a terminal (use --plaintext for an unencrypted repository)");
    }
  }
  if (o.kdfMemory !== undefined && o.kdfMemory * 1024 > MAX_KDF_MEMORY_KIB) {
    throw new CofferError("USAGE", `--kdf-memory must be at most ${MAX_KDF_MEMORY_KIB / 1024} MiB`);
  }
  const config = await Repository.create(store, {
    passphrase,
    mac: o.hashing === "sha256" ? "hmac-sha256" : "blake3",
    compression: o.compression,
    ...(o.kdfMemory !== undefined || o.kdfPasses !== undefined
      ? { kdf: { ...DEFAULT_KDF, ...(o.kdfMemory !== undefined ? { memory: o.kdfMemory * 1024 } : {}), ...(o.kdfPasses !== undefined ? { passes: o.kdfPasses } : {}) } }
      : {}),
  });
  await knownRepositories(ctx).record(config, location);
  if (given !== null) ctx.stderr.write(`coffer: warning: a passphrase is given (${given}) but the repository is plaintext: every other command refuses a passphrase for it\n`);
  if (o.json) ctx.stdout.write(`${JSON.stringify({ id: toHex(config.id), location, encrypted: config.encryption !== null })}\n`);
  else say(ctx.stdout, `created ${config.encryption ? "encrypted" : "plaintext"} repository ${toHex(config.id).slice(0, 8)} at ${shown(location)}`);
}

const positiveInt = (name: string) => (v: string) => {
  if (!/^\d+$/.test(v) || Number(v) < 1) throw new CofferError("USAGE", `${name} must be a positive integer, not ${JSON.stringify(v)}`);
  return Number(v);
};

export function createCommand(ctx: () => Context): Command {
  return new Command("create")
    .description("create a new repository")
    .option("--plaintext", "do not encrypt (integrity is checked against accidents only)")
    .addOption(new Option("--hashing <alg>", "chunk MAC").choices(["blake3", "sha256"]).default("blake3"))
    .addOption(new Option("--compression <alg>", "blob compression").choices(["zstd", "none"]).default("zstd"))
    .option("--kdf-memory <MiB>", `argon2id memory (default ${DEFAULT_KDF.memory / 1024})`, positiveInt("--kdf-memory"))
    .option("--kdf-passes <n>", `argon2id passes (default ${DEFAULT_KDF.passes})`, positiveInt("--kdf-passes"))
    .option("--json", "print the result as JSON")
    .action(async (o: CreateOptions) => runCreate(o, ctx()));
}
