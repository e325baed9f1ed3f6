/**
 * What every command needs: the repository location (`at`, then
 * COFFER_REPOSITORY, then ~/.coffer), its store, the passphrase (--keyfile,
 * COFFER_PASSPHRASE, or a prompt when there is a terminal; never a wait for
 * input without one), and cancellation on SIGINT/SIGTERM.
 */
import { readFile } from "node:fs/promises";
import { homedir } from "node:os";
import { resolve } from "node:path";
import { createInterface } from "node:readline";
import { Writable } from "node:stream";
import { FsStore } from "../connectors/fs-store.js";
import type { Store } from "../connectors/store.js";
import { Repository } from "../repository/repository.js";
import { CofferError } from "../util/errors.js";

export interface GlobalOptions {
  at?: string | undefined;
  keyfile?: string | undefined;
  debug?: boolean | undefined;
}

export interface Context {
  globals: GlobalOptions;
  signal: AbortSignal;
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  env: NodeJS.ProcessEnv;
}

export function repositoryLocation(ctx: Context): string {
  return ctx.globals.at ?? ctx.env.COFFER_REPOSITORY ?? resolve(homedir(), ".coffer");
}

export function openStore(location: string, opts: { readOnly?: boolean } = {}): Store {
  let path = location;
  const m = /^([A-Za-z0-9+.-]{2,}):(?:\/\/)?(.*)$/.exec(location);
  if (m) {
    if (m[1] !== "fs") throw new CofferError("USAGE", `unsupported repository location protocol "${m[1]}:" (supported: fs:, or a path)`);
    path = m[2]!;
  }
  return new FsStore(resolve(path), opts);
}

async function promptHidden(question: string): Promise<string> {
  const muted = new Writable({ write: (_c, _e, cb) => cb() });
  process.stderr.write(question);
  const rl = createInterface({ input: process.stdin, output: muted, terminal: true });
  try {
    return await new Promise<string>((res, rej) => {
      rl.once("line", res);
      rl.once("close", () => rej(new CofferError("NO_PASSPHRASE", "no passphrase given")));
    });
  } finally {
    rl.close();
    process.stderr.write("\n");
  }
}

function hasTty(): boolean {
  return Boolean(process.stdin.isTTY && process.stderr.isTTY);
}

/** The passphrase, or null when none can be had. `confirm` asks twice on a terminal (for create). */
export async function getPassphrase(ctx: Context, confirm = false): Promise<string | null> {
  if (ctx.globals.keyfile !== undefined) {
    let text: string;
    try {
      text = await readFile(ctx.globals.keyfile, "utf8");
    } catch (e) {
      throw new CofferError("USAGE", `cannot read keyfile ${ctx.globals.keyfile}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    const p = text.replace(/\r?\n$/, "");
    if (p === "") throw new CofferError("USAGE", `keyfile ${ctx.globals.keyfile} is empty`);
    return p;
  }
  const env = ctx.env.COFFER_PASSPHRASE;
  if (env !== undefined && env !== "") return env;
  if (!hasTty()) return null;
  const p = await promptHidden("repository passphrase: ");
  if (confirm) {
    const again = await promptHidden("repeat passphrase: ");
    if (again !== p) throw new CofferError("USAGE", "the passphrases do not match");
  }
  if (p === "") throw new CofferError("USAGE", "empty passphrase");
  return p;
}

/** Opens the repository at the context's location. */
export async function openRepository(ctx: Context, opts: { readOnly?: boolean } = {}): Promise<Repository> {
  const store = openStore(repositoryLocation(ctx), opts);
  return Repository.open(store, { passphrase: () => getPassphrase(ctx), signal: ctx.signal });
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
