/**
 * What every command needs: the repository location (`at`, then
 * COFFER_REPOSITORY, then ~/.coffer), its store, the passphrase (--keyfile,
 * COFFER_PASSPHRASE, or a prompt when there is a terminal; never a wait for
 * input without one; bytes, see ./passphrase.ts), the repositories this
 * client knows (./known.ts), and cancellation on SIGINT/SIGTERM. Streams,
 * environment and working directory are the run's (CliIo), never the
 * process's, so that runs sharing one process (the tests') stay apart.
 */
import { readFile } from "node:fs/promises";
import { arch, availableParallelism, homedir, hostname, platform, tmpdir } from "node:os";
import { resolve } from "node:path";
import { createInterface } from "node:readline";
import { Writable } from "node:stream";
import { builtinRegistry } from "../connectors/builtins.js";
import { StoreMode } from "../connectors/flags.js";
import { parseOptions } from "../connectors/params.js";
import type { ConnectorOptions } from "../connectors/records.js";
import type { Registry } from "../connectors/registry.js";
import type { PluginConnectorSpec } from "../connectors/plugin/connector.js";
import { type PluginSpec, type PluginStarters, pluginsDir, registerInstalled } from "../pkg/installed.js";
import type { Store } from "../connectors/store.js";
import type { RepositoryConfig } from "../repository/config.js";
import { assertReplaceable, type OpenedConfig, openConfig } from "../repository/keys.js";
import { Repository } from "../repository/repository.js";
import { CofferError, CorruptError, isCofferError } from "../util/errors.js";
import { say } from "./format.js";
import { KnownRepositories, knownDir } from "./known.js";
import { envPassphrase, keyfilePassphrase, NEW_PASSPHRASE_VAR, OTHER_PASSPHRASE_VAR, PASSPHRASE_VAR } from "./passphrase.js";

/** What a run of the CLI is given: its streams, environment, directory and cancellation (src/cli/main.ts gives the process's). */
export interface CliIo {
  stdin: NodeJS.ReadableStream;
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  env: NodeJS.ProcessEnv;
  /** The directory relative paths are taken from. */
  cwd: string;
  /** Aborted when the run is interrupted (SIGINT/SIGTERM). */
  signal: AbortSignal;
  /**
   * The bytes of `env` as the process received it (./passphrase.ts), where
   * `env` is the process's own; without it a COFFER_PASSPHRASE that is not
   * valid UTF-8 is refused.
   */
  environ?: (() => Uint8Array | null) | undefined;
}

export interface GlobalOptions {
  at?: string | undefined;
  keyfile?: string | undefined;
  debug?: boolean | undefined;
  /** `--store-opt KEY=VALUE`: configuration of the repository's store. */
  storeOpt?: string[] | undefined;
}

export interface Context extends CliIo {
  globals: GlobalOptions;
  /** The connectors: built-ins and installed plugins. */
  registry: Registry;
  /** The run's scratch directory (scratchDir of its environment): scan caches, tar spools, plugin sockets. */
  tmpDir: string;
}

/**
 * The scratch directory of a run with environment `env`, read as
 * os.tmpdir() reads the process's: TMPDIR, else TMP, else TEMP (an empty
 * one is unset), a trailing "/" dropped; else os.tmpdir().
 */
export function scratchDir(env: NodeJS.ProcessEnv): string {
  const dir = env.TMPDIR || env.TMP || env.TEMP;
  if (!dir) return tmpdir();
  return dir.length > 1 && dir.endsWith("/") ? dir.slice(0, -1) : dir;
}

type RunStreams = Pick<CliIo, "env" | "stderr">;

/** How installed plugins start: the host adapters (src/connectors/plugin), with the run's environment and stderr. */
// Loaded when a plugin is used: gRPC costs every other command nothing.
function pluginStarters(io: RunStreams): PluginStarters {
  return {
    importer: async (spec, proto, config, opts) => (await import("../connectors/plugin/importer.js")).PluginImporter.start(runSpec(spec, opts, io), proto, config, opts),
    exporter: async (spec, proto, config, opts) => (await import("../connectors/plugin/exporter.js")).PluginExporter.start(runSpec(spec, opts, io), proto, config, opts),
    storage: async (spec, proto, config, opts) => (await import("../connectors/plugin/store.js")).PluginStore.start(runSpec(spec, opts, io), proto, config, opts),
  };
}

/**
 * A plugin ends with the command (Ctrl-C), and its stderr lines go to the
 * run's stderr prefixed with its name; $COFFER_PLUGIN_TIMEOUT_MS sets the
 * deadline of its calls (default 60 s). It sees the run's environment and
 * scratch directory through `opts` (connectorOptions).
 */
function runSpec(spec: PluginSpec, opts: ConnectorOptions, io: RunStreams): PluginConnectorSpec {
  const t = Number(io.env.COFFER_PLUGIN_TIMEOUT_MS);
  return {
    ...spec,
    signal: opts.signal,
    onStderr: (line) => say(io.stderr, `[plugin ${spec.name}] ${line}`),
    ...(Number.isSafeInteger(t) && t > 0 ? { timeoutMs: t } : {}),
  };
}

/** The registry of a CLI run: the built-ins and the installed plugins (found at every start). */
export async function loadRegistry(io: RunStreams, onWarning: (m: string) => void): Promise<Registry> {
  const r = builtinRegistry();
  await registerInstalled(r, pluginsDir(io.env), pluginStarters(io), onWarning);
  return r;
}

/** A path the user gave (a file, a directory), as found from the run's directory. */
export function userPath(ctx: Pick<CliIo, "cwd">, p: string): string {
  return resolve(ctx.cwd, p);
}

/** What connectors are told about this run (Kloset's Options). */
export function connectorOptions(ctx: Context, o: Partial<ConnectorOptions> = {}): ConnectorOptions {
  return {
    hostname: hostname(),
    os: platform(),
    arch: arch(),
    cwd: ctx.cwd,
    maxConcurrency: availableParallelism() * 8,
    excludes: [],
    noXattr: false,
    onWarning: (m: string) => say(ctx.stderr, `coffer: warning: ${m}`),
    signal: ctx.signal,
    stdin: ctx.stdin,
    stdout: ctx.stdout,
    env: ctx.env,
    tmpDir: ctx.tmpDir,
    ...o,
  };
}

export function repositoryLocation(ctx: Context): string {
  return ctx.globals.at ?? ctx.env.COFFER_REPOSITORY ?? resolve(homeDir(ctx.env), ".coffer");
}

/** $HOME of the run, else the user's home directory. */
function homeDir(env: NodeJS.ProcessEnv): string {
  return env.HOME !== undefined && env.HOME !== "" ? env.HOME : homedir();
}

/**
 * The store at a repository location (`fs:`, a path, `x.ptar`, any
 * registered protocol), its options validated: `--store-opt`'s, which are
 * the `at` repository's (`other`: a second repository, which takes none).
 */
export async function openStore(ctx: Context, location: string, opts: { readOnly?: boolean; other?: boolean } = {}): Promise<Store> {
  const config = parseOptions(opts.other ? undefined : ctx.globals.storeOpt);
  return ctx.registry.make("storage", location, config, connectorOptions(ctx, { readOnly: opts.readOnly ?? false }));
}

/** Fails before any work when the store cannot be written (Store.mode()). */
export async function assertWritable(store: Store, location: string, signal?: AbortSignal): Promise<void> {
  const mode = await store.mode({ signal });
  if ((mode & StoreMode.WRITE) === 0) throw new CofferError("READ_ONLY", `the repository at ${location} is read-only`);
}

async function promptHidden(ctx: Context, question: string): Promise<string> {
  const muted = new Writable({ write: (_c, _e, cb) => cb() });
  ctx.stderr.write(question);
  const rl = createInterface({ input: ctx.stdin, output: muted, terminal: true });
  try {
    return await new Promise<string>((res, rej) => {
      rl.once("line", res);
      rl.once("close", () => rej(new CofferError("NO_PASSPHRASE", "no passphrase given")));
    });
  } finally {
    rl.close();
    ctx.stderr.write("\n");
  }
}

/** A prompt is shown only with a terminal on both stdin and stderr. */
function hasTty(ctx: Context): boolean {
  const tty = (s: object) => (s as { isTTY?: boolean }).isTTY === true;
  return tty(ctx.stdin) && tty(ctx.stderr);
}

/** Where a repository's passphrase comes from: a file given by an option, else a variable, else a prompt. */
export interface PassphraseSource {
  /** The file's path as given, if it was. */
  file: string | undefined;
  /** The option that gives the file, and what messages call the file. */
  fileOption: string;
  fileLabel: string;
  variable: string;
  prompt: string;
}

/** The `at` repository's passphrase: --keyfile, COFFER_PASSPHRASE, a prompt. */
function mainPassphrase(ctx: Context): PassphraseSource {
  return { file: ctx.globals.keyfile, fileOption: "--keyfile", fileLabel: "keyfile", variable: PASSPHRASE_VAR, prompt: "repository passphrase: " };
}

/** `sync`'s other repository's passphrase: --other-passphrase-file, COFFER_OTHER_PASSPHRASE, a prompt. */
export function otherPassphrase(file: string | undefined): PassphraseSource {
  return { file, fileOption: "--other-passphrase-file", fileLabel: "other passphrase file", variable: OTHER_PASSPHRASE_VAR, prompt: "other repository passphrase: " };
}

/** The new passphrase of `key add` and `key passwd`: --new-passphrase-file, COFFER_NEW_PASSPHRASE, a prompt. */
function newPassphrase(file: string | undefined): PassphraseSource {
  return { file, fileOption: "--new-passphrase-file", fileLabel: "--new-passphrase-file", variable: NEW_PASSPHRASE_VAR, prompt: "new passphrase: " };
}

/**
 * The passphrase as bytes, or null when none can be had: a keyfile's bytes
 * less one trailing "\n" or "\r\n", COFFER_PASSPHRASE's bytes, or what is
 * typed at the prompt, UTF-8 encoded (`source` names another file, variable
 * and prompt). `confirm` asks twice on a terminal (for create).
 */
export async function getPassphrase(ctx: Context, confirm = false, source: PassphraseSource = mainPassphrase(ctx)): Promise<Uint8Array | null> {
  if (source.file !== undefined) {
    let bytes: Uint8Array;
    try {
      bytes = await readFile(userPath(ctx, source.file));
    } catch (e) {
      throw new CofferError("USAGE", `cannot read ${source.fileLabel} ${source.file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    const p = keyfilePassphrase(bytes);
    if (p.byteLength === 0) throw new CofferError("USAGE", `${source.fileLabel} ${source.file} is empty`);
    return p;
  }
  const env = envPassphrase(ctx.env[source.variable], ctx.environ ?? (() => null), source.variable, source.fileOption);
  if (env !== null) return env;
  if (!hasTty(ctx)) return null;
  const p = await promptHidden(ctx, source.prompt);
  if (confirm) {
    const again = await promptHidden(ctx, "repeat passphrase: ");
    if (again !== p) throw new CofferError("USAGE", "the passphrases do not match");
    // The terminal's bytes were decoded as UTF-8: what was not UTF-8 became U+FFFD, and would weaken the passphrase.
    if (p.includes("\uFFFD")) throw new CofferError("USAGE", `the passphrase typed is not valid UTF-8 (is the terminal's locale UTF-8?): use ${source.fileOption} FILE for a passphrase of other bytes`);
  }
  if (p === "") throw new CofferError("USAGE", "empty passphrase");
  return new Uint8Array(Buffer.from(p, "utf8"));
}

/**
 * The new passphrase of `key add` and `key passwd`, as getPassphrase gets
 * one: `--new-passphrase-file FILE`, else COFFER_NEW_PASSPHRASE, else a
 * prompt (asked twice) on a terminal; NO_PASSPHRASE when none can be had.
 */
export async function getNewPassphrase(ctx: Context, file: string | undefined): Promise<Uint8Array> {
  const p = await getPassphrase(ctx, true, newPassphrase(file));
  if (p === null) throw new CofferError("NO_PASSPHRASE", `no new passphrase: give --new-passphrase-file FILE or ${NEW_PASSPHRASE_VAR}, or run on a terminal`);
  return p;
}

/** Which source would give a passphrase without asking (a prompt is only ever shown for an encrypted repository). */
export function passphraseGiven(ctx: Context, source: PassphraseSource = mainPassphrase(ctx)): string | null {
  if (source.file !== undefined) return `${source.fileOption} ${source.file}`;
  const env = ctx.env[source.variable];
  return env !== undefined && env !== "" ? source.variable : null;
}

/** The record of repositories this client has seen (src/cli/known.ts), warnings on ctx.stderr. */
export function knownRepositories(ctx: Context): KnownRepositories {
  return new KnownRepositories(knownDir(ctx.env), (m) => ctx.stderr.write(`coffer: warning: ${m}\n`), ctx.cwd);
}

/**
 * Refuses a configuration that says "plaintext" where this client expects an
 * encrypted repository: one it saw encrypted (CORRUPT), or one it is given
 * a passphrase for (USAGE). Either is what an encrypted repository whose
 * configuration was rewritten by someone without the passphrase looks like;
 * using it would write new data unencrypted.
 */
async function checkConfig(
  ctx: Context,
  config: RepositoryConfig,
  location: string,
  known: KnownRepositories,
  source: PassphraseSource = mainPassphrase(ctx),
): Promise<void> {
  await known.check(config, location);
  if (config.encryption !== null) return;
  const given = passphraseGiven(ctx, source);
  if (given !== null) {
    throw new CofferError(
      "USAGE",
      `the repository configuration at ${location} says it is not encrypted, but a passphrase was given (${given}): coffer refuses, because an encrypted repository whose configuration was rewritten by someone without the passphrase looks exactly like this. If the repository is plaintext, run without a passphrase`,
    );
  }
}

/** A CORRUPT error of the configuration itself, with the location named. */
function withLocation(e: unknown, location: string): unknown {
  if (isCofferError(e, "CORRUPT") && typeof e.data.configDetail === "string") return new CorruptError(`repository configuration at ${location}`, e.data.configDetail, e.data);
  return e;
}

/** A second repository a command works with (`sync`'s OTHER): its location, as `at` takes one, and where its passphrase comes from. */
export interface OtherRepository {
  location: string;
  passphrase: PassphraseSource;
}

/** Opens the repository at the context's location (or `other`'s). */
export async function openRepository(ctx: Context, opts: { readOnly?: boolean; other?: OtherRepository } = {}): Promise<Repository> {
  const location = opts.other?.location ?? repositoryLocation(ctx);
  const source = opts.other?.passphrase ?? mainPassphrase(ctx);
  const store = await openStore(ctx, location, { readOnly: opts.readOnly ?? false, other: opts.other !== undefined });
  try {
    if (!opts.readOnly) await assertWritable(store, location, ctx.signal);
    const known = knownRepositories(ctx);
    const repo = await Repository.open(store, {
      passphrase: () => getPassphrase(ctx, false, source),
      checkConfig: (config) => checkConfig(ctx, config, location, known, source),
      signal: ctx.signal,
      onWarning: (m) => say(ctx.stderr, `coffer: warning: ${m}`),
    }).catch((e: unknown) => {
      throw withLocation(e, location);
    });
    await known.record(repo.config, location);
    return repo;
  } catch (e) {
    await store.close().catch(() => {});
    throw e;
  }
}

/** What `withConfig` hands on: the store, its configuration unlocked, and where it is. */
export interface ConfigAccess {
  store: Store;
  opened: OpenedConfig;
  location: string;
  known: KnownRepositories;
}

/**
 * Opens the store at the context's location and its configuration with the
 * passphrase (checked as openRepository checks it, no state loaded: what
 * `coffer key` needs), runs `fn`, and always closes the store. Unless
 * `readOnly`, a store that cannot be written or cannot replace its
 * configuration is refused before the passphrase is asked.
 */
export async function withConfig<T>(ctx: Context, opts: { readOnly?: boolean }, fn: (a: ConfigAccess) => Promise<T>): Promise<T> {
  const location = repositoryLocation(ctx);
  const store = await openStore(ctx, location, opts);
  try {
    if (!opts.readOnly) {
      await assertWritable(store, location, ctx.signal);
      assertReplaceable(store);
    }
    const known = knownRepositories(ctx);
    const opened = await openConfig(store, {
      passphrase: () => getPassphrase(ctx),
      checkConfig: (config) => checkConfig(ctx, config, location, known),
      signal: ctx.signal,
    }).catch((e: unknown) => {
      throw withLocation(e, location);
    });
    await known.record(opened.config, location);
    const out = await fn({ store, opened, location, known });
    await store.close();
    return out;
  } catch (e) {
    await store.close().catch(() => {});
    throw e;
  }
}

/** Opens the repository, runs `fn`, and always closes it (releasing any lock). */
export async function withRepository<T>(ctx: Context, opts: { readOnly?: boolean }, fn: (repo: Repository) => Promise<T>): Promise<T> {
  const repo = await openRepository(ctx, opts);
  try {
    return await fn(repo);
  } finally {
    await repo.close();
  }
}
