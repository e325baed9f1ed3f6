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
import { Repository } from "../repository/repository.js";
import { CofferError, CorruptError, isCofferError } from "../util/errors.js";
import { say } from "./format.js";
import { KnownRepositories, knownDir } from "./known.js";
import { envPassphrase, keyfilePassphrase, PASSPHRASE_VAR } from "./passphrase.js";

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

/** The store at a repository location (`fs:`, a path, `x.ptar`, any registered protocol), its options validated. */
export async function openStore(ctx: Context, location: string, opts: { readOnly?: boolean } = {}): Promise<Store> {
  const config = parseOptions(ctx.globals.storeOpt);
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

/**
 * The passphrase as bytes, or null when none can be had: a keyfile's bytes
 * less one trailing "\n" or "\r\n", COFFER_PASSPHRASE's bytes, or what is
 * typed at the prompt, UTF-8 encoded. `confirm` asks twice on a terminal
 * (for create).
 */
export async function getPassphrase(ctx: Context, confirm = false): Promise<Uint8Array | null> {
  if (ctx.globals.keyfile !== undefined) {
    let bytes: Uint8Array;
    try {
      bytes = await readFile(userPath(ctx, ctx.globals.keyfile));
    } catch (e) {
      throw new CofferError("USAGE", `cannot read keyfile ${ctx.globals.keyfile}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    const p = keyfilePassphrase(bytes);
    if (p.byteLength === 0) throw new CofferError("USAGE", `keyfile ${ctx.globals.keyfile} is empty`);
    return p;
  }
  const env = envPassphrase(ctx.env[PASSPHRASE_VAR], ctx.environ ?? (() => null));
  if (env !== null) return env;
  if (!hasTty(ctx)) return null;
  const p = await promptHidden(ctx, "repository passphrase: ");
  if (confirm) {
    const again = await promptHidden(ctx, "repeat passphrase: ");
    if (again !== p) throw new CofferError("USAGE", "the passphrases do not match");
    // The terminal's bytes were decoded as UTF-8: what was not UTF-8 became U+FFFD, and would weaken the passphrase.
    if (p.includes("\uFFFD")) throw new CofferError("USAGE", "the passphrase typed is not valid UTF-8 (is the terminal's locale UTF-8?): use --keyfile FILE for a passphrase of other bytes");
  }
  if (p === "") throw new CofferError("USAGE", "empty passphrase");
  return new Uint8Array(Buffer.from(p, "utf8"));
}

/** Which source would give a passphrase without asking (a prompt is only ever shown for an encrypted repository). */
export function passphraseGiven(ctx: Context): string | null {
  if (ctx.globals.keyfile !== undefined) return `--keyfile ${ctx.globals.keyfile}`;
  const env = ctx.env[PASSPHRASE_VAR];
  return env !== undefined && env !== "" ? PASSPHRASE_VAR : null;
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
async function checkConfig(ctx: Context, config: RepositoryConfig, location: string, known: KnownRepositories): Promise<void> {
  await known.check(config, location);
  if (config.encryption !== null) return;
  const given = passphraseGiven(ctx);
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

/** Opens the repository at the context's location. */
async function openRepository(ctx: Context, opts: { readOnly?: boolean } = {}): Promise<Repository> {
  const location = repositoryLocation(ctx);
  const store = await openStore(ctx, location, opts);
  try {
    if (!opts.readOnly) await assertWritable(store, location, ctx.signal);
    const known = knownRepositories(ctx);
    const repo = await Repository.open(store, {
      passphrase: () => getPassphrase(ctx),
      checkConfig: (config) => checkConfig(ctx, config, location, known),
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

/** Opens the repository, runs `fn`, and always closes it (releasing any lock). */
export async function withRepository<T>(ctx: Context, opts: { readOnly?: boolean }, fn: (repo: Repository) => Promise<T>): Promise<T> {
  const repo = await openRepository(ctx, opts);
  try {
    return await fn(repo);
  } finally {
    await repo.close();
  }
}
