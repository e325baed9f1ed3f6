/**
 * `coffer key list|add|remove|passwd`: the passphrases that open an
 * encrypted repository, each a key wrapping its master key (docs/CLI.md,
 * "key"). Changes go through Store.replaceConfig: one atomic replacement of
 * the configuration each (passwd makes two: the new key added and checked,
 * then the old one removed).
 */
import { hostname, userInfo } from "node:os";
import { Command } from "commander";
import type { KeyEnvelope, NewKeyOptions, RepositoryConfig } from "../../repository/config.js";
import { addKey, changePassphrase, findKey, keyIdHex, keysOf, removeKey, storeConfig } from "../../repository/keys.js";
import { CofferError } from "../../util/errors.js";
import { equalBytes } from "../../util/hex.js";
import { type ConfigAccess, type Context, getNewPassphrase, withConfig } from "../context.js";
import { say, shown } from "../format.js";
import { kdfCost, withKdfOptions } from "./create.js";

interface KeyListOptions {
  json?: boolean;
}

interface NewKeyCmdOptions {
  newPassphraseFile?: string;
  host?: string;
  user?: string;
  kdfMemory?: number;
  kdfPasses?: number;
  json?: boolean;
}

interface KeyRemoveOptions {
  force?: boolean;
  json?: boolean;
}

/** A key as `--json` gives it. */
function keyJson(k: KeyEnvelope, inUse: KeyEnvelope | null): Record<string, unknown> {
  return {
    id: keyIdHex(k),
    current: inUse !== null && equalBytes(k.id, inUse.id),
    host: k.host,
    user: k.user,
    created: new Date(k.createdMs).toISOString(),
    kdf: { algorithm: k.kdf.algorithm, memory: k.kdf.memory, passes: k.kdf.passes, parallelism: k.kdf.parallelism },
  };
}

/** "1a2b3c4d  alice@laptop  2026-12-07T09:00:00.000Z" (a name the configuration does not record shows as "?"). */
function keyLine(k: KeyEnvelope, inUse: KeyEnvelope | null): string {
  const mark = inUse !== null && equalBytes(k.id, inUse.id) ? "*" : " ";
  const who = `${k.user === "" ? "?" : shown(k.user)}@${k.host === "" ? "?" : shown(k.host)}`;
  return `${mark} ${keyIdHex(k).slice(0, 8)}  ${who.padEnd(24)}  ${new Date(k.createdMs).toISOString()}  argon2id m=${k.kdf.memory / 1024}MiB t=${k.kdf.passes} p=${k.kdf.parallelism}`;
}

function currentUser(): string {
  try {
    return userInfo().username;
  } catch {
    return String(process.getuid?.() ?? "");
  }
}

/** The new key's passphrase, name and KDF cost, from the options. */
async function newKeyOptions(o: NewKeyCmdOptions, ctx: Context): Promise<NewKeyOptions> {
  const kdf = kdfCost(o);
  const passphrase = await getNewPassphrase(ctx, o.newPassphraseFile);
  return { passphrase, host: o.host ?? hostname(), user: o.user ?? currentUser(), kdf };
}

/** Stores `next` in place of the configuration read, and records it as seen. */
async function replace(a: ConfigAccess, next: RepositoryConfig, ctx: Context): Promise<void> {
  await storeConfig(a.store, a.opened, next, { signal: ctx.signal });
  await a.known.record(next, a.location);
}

async function runKeyList(o: KeyListOptions, ctx: Context): Promise<void> {
  await withConfig(ctx, { readOnly: true }, async ({ opened }) => {
    const keys = keysOf(opened.config);
    const inUse = opened.unlocked.key;
    if (o.json) return void ctx.stdout.write(`${JSON.stringify({ version: opened.config.version, keys: keys.map((k) => keyJson(k, inUse)) })}\n`);
    for (const k of keys) say(ctx.stdout, keyLine(k, inUse));
  });
}

async function runKeyAdd(o: NewKeyCmdOptions, ctx: Context): Promise<void> {
  await withConfig(ctx, {}, async (a) => {
    const { config, key } = await addKey(a.opened, await newKeyOptions(o, ctx));
    await replace(a, config, ctx);
    if (o.json) ctx.stdout.write(`${JSON.stringify({ added: keyJson(key, a.opened.unlocked.key), keys: keysOf(config).length })}\n`);
    else say(ctx.stdout, `added key ${keyIdHex(key).slice(0, 8)} (${keysOf(config).length} keys)`);
  });
}

async function runKeyRemove(id: string, o: KeyRemoveOptions, ctx: Context): Promise<void> {
  await withConfig(ctx, {}, async (a) => {
    const key = findKey(a.opened.config, id);
    const inUse = a.opened.unlocked.key;
    const count = keysOf(a.opened.config).length;
    if (!o.force && count === 1) {
      throw new CofferError("USAGE", `key ${keyIdHex(key).slice(0, 8)} is the repository's last key: without it no passphrase opens the repository and its data is lost for good (--force removes it all the same)`);
    }
    if (!o.force && inUse !== null && equalBytes(key.id, inUse.id)) {
      throw new CofferError("USAGE", `key ${keyIdHex(key).slice(0, 8)} is the key in use (the passphrase given opened it): use \`coffer key passwd\` to replace it, or --force to remove it`);
    }
    const config = removeKey(a.opened, key.id);
    await replace(a, config, ctx);
    if (o.json) ctx.stdout.write(`${JSON.stringify({ removed: keyJson(key, inUse), keys: keysOf(config).length })}\n`);
    else say(ctx.stdout, `removed key ${keyIdHex(key).slice(0, 8)} (${keysOf(config).length} keys left${keysOf(config).length === 0 ? ": no passphrase opens the repository any more" : ""})`);
  });
}

async function runKeyPasswd(o: NewKeyCmdOptions, ctx: Context): Promise<void> {
  await withConfig(ctx, {}, async (a) => {
    const change = await changePassphrase(a.store, a.opened, await newKeyOptions(o, ctx), { signal: ctx.signal });
    await a.known.record(change.config, a.location);
    if (o.json) ctx.stdout.write(`${JSON.stringify({ added: keyJson(change.added, change.added), removed: keyJson(change.removed, change.added), keys: keysOf(change.config).length })}\n`);
    else say(ctx.stdout, `replaced key ${keyIdHex(change.removed).slice(0, 8)} by key ${keyIdHex(change.added).slice(0, 8)}`);
  });
}

/** The options of a command that makes a key. */
function newKeyCommand(name: string, description: string): Command {
  return withKdfOptions(
    new Command(name)
      .description(description)
      .option("--new-passphrase-file <file>", "read the new passphrase from a file (else $COFFER_NEW_PASSPHRASE, else a prompt)")
      .option("--host <name>", "the host the key is named with (default this host's name)")
      .option("--user <name>", "the user the key is named with (default the current user)"),
  ).option("--json", "print the result as JSON");
}

export function keyCommand(ctx: () => Context): Command {
  const key = new Command("key").description("list, add, remove and change the passphrases that open the repository");
  key
    .command("list")
    .description("list the keys (* marks the one the passphrase given opens)")
    .option("--json", "print JSON")
    .action(async (o: KeyListOptions) => runKeyList(o, ctx()));
  key.addCommand(newKeyCommand("add", "add a key: a new passphrase that opens the repository").action(async (o: NewKeyCmdOptions) => runKeyAdd(o, ctx())));
  key
    .command("remove")
    .description("remove a key (not the last one, nor the one in use, without --force)")
    .argument("<id>", "key ID or a unique prefix of it")
    .option("--force", "remove it even if it is the last key or the one in use")
    .option("--json", "print the result as JSON")
    .action(async (id: string, o: KeyRemoveOptions) => runKeyRemove(id, o, ctx()));
  key.addCommand(newKeyCommand("passwd", "replace the key in use by a new passphrase's (added and checked, then the old one removed)").action(async (o: NewKeyCmdOptions) => runKeyPasswd(o, ctx())));
  return key;
}
