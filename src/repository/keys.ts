/**
 * The keys of an encrypted repository (docs/FORMAT.md, "Configuration",
 * version 3): listing them, adding one, removing one, and replacing a
 * passphrase, each a new configuration that Store.replaceConfig puts in
 * place of the one read. A version-1 or -2 configuration (one key, which
 * it does not name) becomes version 3 at the first change.
 */
import type { CallOptions, Store } from "../connectors/store.js";
import { CofferError } from "../util/errors.js";
import { equalBytes, toHex } from "../util/hex.js";
import {
  decodeConfig,
  encodeConfig,
  KEYS_VERSION,
  type KeyEnvelope,
  newKeyEnvelope,
  type NewKeyOptions,
  openKey,
  type Passphrase,
  type RepositoryConfig,
  rewrapForKeys,
  type Unlocked,
  withKeys,
} from "./config.js";

/** A configuration as read from its store, with what the passphrase opened of it. */
export interface OpenedConfig {
  /** The exact bytes read: what a replacement must still find there. */
  bytes: Uint8Array;
  config: RepositoryConfig;
  unlocked: Unlocked;
}

export interface OpenConfigOptions extends CallOptions {
  passphrase: () => Promise<Passphrase | null>;
  /** As Repository.open's: may refuse the configuration before any passphrase is asked. */
  checkConfig?: ((config: RepositoryConfig) => void | Promise<void>) | undefined;
}

/** Reads and unlocks the configuration of the repository in `store` (no state is loaded); a plaintext repository is refused: it has no keys. */
export async function openConfig(store: Store, o: OpenConfigOptions): Promise<OpenedConfig> {
  const bytes = await store.open({ signal: o.signal });
  const config = decodeConfig(bytes);
  await o.checkConfig?.(config);
  if (config.encryption === null) throw new CofferError("USAGE", "the repository is plaintext: it has no keys (no passphrase opens it)");
  const unlocked = await openKey(config, await o.passphrase());
  return { bytes, config, unlocked };
}

/** The key envelopes, newest first. */
export function keysOf(config: RepositoryConfig): KeyEnvelope[] {
  return config.encryption?.keys ?? [];
}

export const keyIdHex = (k: KeyEnvelope): string => toHex(k.id);

/** The key whose ID (hex) starts with `prefix`: NOT_FOUND when none does, USAGE when several do. */
export function findKey(config: RepositoryConfig, prefix: string): KeyEnvelope {
  const p = prefix.toLowerCase();
  if (!/^[0-9a-f]+$/.test(p)) throw new CofferError("USAGE", `a key ID is hexadecimal, not ${JSON.stringify(prefix)}`);
  const found = keysOf(config).filter((k) => keyIdHex(k).startsWith(p));
  if (found.length === 0) throw new CofferError("NOT_FOUND", `no key ${prefix} (see \`coffer key list\`)`);
  if (found.length > 1) throw new CofferError("USAGE", `key ID prefix ${prefix} is ambiguous: ${found.map(keyIdHex).join(", ")}`);
  return found[0]!;
}

/** The keys as version 3 holds them: the key of a version-1 or -2 configuration wrapped again for version 3. */
function currentKeys(o: OpenedConfig): KeyEnvelope[] {
  return o.config.version === KEYS_VERSION ? keysOf(o.config) : [rewrapForKeys(o.config, o.unlocked)];
}

/** The configuration with a new key for `k.passphrase` first; returns it and the key. */
export async function addKey(o: OpenedConfig, k: NewKeyOptions): Promise<{ config: RepositoryConfig; key: KeyEnvelope }> {
  const keys = currentKeys(o);
  const key = await newKeyEnvelope(o.unlocked.master, k);
  return { config: withKeys(o.config, [key, ...keys], o.unlocked.master), key };
}

/** The configuration without key `id` (which must be there). */
export function removeKey(o: OpenedConfig, id: Uint8Array): RepositoryConfig {
  const keys = currentKeys(o);
  if (!keys.some((k) => equalBytes(k.id, id))) throw new CofferError("NOT_FOUND", `no key ${toHex(id)}`);
  return withKeys(o.config, keys.filter((k) => !equalBytes(k.id, id)), o.unlocked.master);
}

/**
 * Puts `next` in place of the configuration read (`o.bytes`), atomically
 * (Store.replaceConfig); returns the bytes written. UNSUPPORTED for a store
 * that cannot replace its configuration, naming it.
 */
export async function storeConfig(store: Store, o: OpenedConfig, next: RepositoryConfig, opts: CallOptions = {}): Promise<Uint8Array> {
  const replace = assertReplaceable(store);
  const bytes = encodeConfig(next);
  await replace(bytes, o.bytes, opts);
  return bytes;
}

/** The store's replaceConfig; UNSUPPORTED, naming the store, when it has none (a plugin's). */
export function assertReplaceable(store: Store): NonNullable<Store["replaceConfig"]> {
  if (store.replaceConfig === undefined) {
    throw new CofferError(
      "UNSUPPORTED",
      `the ${store.type} store at ${store.root} cannot replace the repository configuration, so its keys cannot change (the fs, ptar, s3, sftp and memory stores can; a plugin's store protocol has no such call)`,
      { type: store.type },
    );
  }
  return store.replaceConfig.bind(store);
}

/** What changePassphrase did: the key added, and the one removed. */
export interface PassphraseChange {
  added: KeyEnvelope;
  removed: KeyEnvelope;
  config: RepositoryConfig;
}

/**
 * Replaces the passphrase that opened `o` with `k.passphrase`: stores the
 * configuration with the new key added, reads it back from the store and
 * opens it with the new passphrase (it must open with the new key), then
 * stores it without the old key. Killed between the two, the repository
 * opens with either passphrase.
 */
export async function changePassphrase(store: Store, o: OpenedConfig, k: NewKeyOptions, opts: CallOptions = {}): Promise<PassphraseChange> {
  const old = o.unlocked.key!;
  const { config, key } = await addKey(o, k);
  await storeConfig(store, o, config, opts);
  const bytes = await store.open(opts);
  const stored = decodeConfig(bytes);
  const unlocked = await openKey(stored, k.passphrase);
  if (unlocked.key === null || !equalBytes(unlocked.key.id, key.id)) {
    throw new CofferError("WRONG_PASSPHRASE", `the new passphrase opens key ${unlocked.key === null ? "none" : keyIdHex(unlocked.key)} of the stored configuration, not the key just added: the old key is kept`);
  }
  const reread: OpenedConfig = { bytes, config: stored, unlocked };
  const final = removeKey(reread, old.id);
  await storeConfig(store, reread, final, opts);
  return { added: key, removed: old, config: final };
}
