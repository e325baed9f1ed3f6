// The tools under test and how each is invoked: its commands (init, backup,
// restore, a warm-up), its environment (a private HOME, the password), how it
// is found or installed, the settings read back from its repository, and the
// record of what was measured of it.

import * as fs from "node:fs";
import * as path from "node:path";
import { ROOT, exec, execSync, hasCommand, log } from "./process.ts";
import type { ExecResult } from "./process.ts";

export type ToolName = "coffer" | "restic" | "borg";
export const ALL_TOOLS: readonly ToolName[] = ["coffer", "restic", "borg"];
/** The remote stores, each on its server on 127.0.0.1 (bench/servers.ts). */
export type RemoteStore = "s3" | "sftp";
export const REMOTE_STORES: readonly RemoteStore[] = ["s3", "sftp"];
export const STORE_LABEL: Record<RemoteStore, string> = { s3: "S3", sftp: "SFTP" };
/** The phases run against a remote store: the tree's backups and restore, then the big file's backup and restore. */
export type RemotePhase = "first" | "nochange" | "restore" | "bigbackup" | "bigrestore";
export const REMOTE_PHASES: readonly RemotePhase[] = ["first", "nochange", "restore", "bigbackup", "bigrestore"];
const LOCAL_PHASES = ["first", "nochange", "change", "restore", "big"] as const;
export type Phase = (typeof LOCAL_PHASES)[number] | `${RemoteStore}-${RemotePhase}`;
/** The local phases, in their order. */
export const PHASES: readonly Phase[] = LOCAL_PHASES;
const REMOTE_PHASE_LABEL: Record<RemotePhase, string> = {
  first: "first backup",
  nochange: "no-change backup",
  restore: "restore",
  bigbackup: "big file backup",
  bigrestore: "big file restore",
};
export const PHASE_LABEL = {
  first: "first backup",
  nochange: "no-change backup",
  change: "1% change backup",
  restore: "restore",
  big: "big file backup",
  ...Object.fromEntries(REMOTE_STORES.flatMap((s) => REMOTE_PHASES.map((p) => [`${s}-${p}`, `${STORE_LABEL[s]} ${REMOTE_PHASE_LABEL[p]}`]))),
} as Record<Phase, string>;
/** Whether the tool can keep a repository on a remote store: borg reaches remote repositories only through a borg on the server. */
export function hasRemoteBackends(name: ToolName): boolean {
  return name !== "borg";
}

/** One timed command. */
export interface Measure {
  round: number;
  wall: number; // seconds
  rss: number | null; // bytes
  cpu: number | null; // user + sys seconds
  code: number;
}

/** A tool under test and what was measured of it, phase by phase and round by round. */
export interface Tool {
  name: ToolName;
  available: boolean;
  version: string;
  note: string; // why it is unavailable
  failed: boolean; // a command failed: the tool sits out the rest of the run
  home: string; // its private HOME, emptied every round
  lastArchive: string; // the label of its latest backup (borg extracts it by name)
  measures: Record<Phase, Measure[]>;
  repoSize: number[]; // bytes after each round's first backup
  cacheSize: number[]; // bytes of its HOME (caches, configs) after each round's first backup
}

export interface Cmd {
  cmd: string;
  args: string[];
  cwd: string;
  /** Set on top of the tool's environment (a remote store's credentials). */
  env?: Record<string, string>;
}

/**
 * A repository as each tool names it: a local directory, or a location on a
 * remote store with the options and environment the tool needs to reach it.
 */
export interface Repo {
  /** coffer's arguments before its command: `[--store-opt K=V]... at LOCATION`. */
  coffer: string[];
  /** restic's: `-r LOCATION [-o K=V]...`. */
  restic: string[];
  /** borg's repository path; null on a remote store. */
  borg: string | null;
  /** Where init and the settings' read-back run. */
  cwd: string;
  env: Record<string, string>;
}

export function localRepo(dir: string): Repo {
  return { coffer: ["at", dir], restic: ["-r", dir], borg: dir, cwd: path.dirname(dir), env: {} };
}

function borgRepo(repo: Repo): string {
  if (repo.borg === null) throw new Error("borg has no remote store here");
  return repo.borg;
}

const PASSWORD = "coffer-bench-password";
export const COFFER_BIN = path.join(ROOT, "bin", "coffer.js");
const APT_PACKAGE: Record<ToolName, string> = { coffer: "", restic: "restic", borg: "borgbackup" };

/** The tool's environment: none of the caller's repository settings, a private HOME, the password. */
export function toolEnv(t: Tool): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const k of ["COFFER_REPOSITORY", "RESTIC_REPOSITORY", "RESTIC_REPOSITORY_FILE", "RESTIC_PASSWORD_FILE", "RESTIC_PASSWORD_COMMAND", "BORG_REPO", "BORG_PASSCOMMAND", "BORG_BASE_DIR", "RESTIC_CACHE_DIR", "BORG_CACHE_DIR", "BORG_CONFIG_DIR", "BORG_SECURITY_DIR", "BORG_KEYS_DIR", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION", "SSH_AUTH_SOCK"]) {
    delete env[k];
  }
  return {
    ...env,
    // a private HOME per tool: caches and configs live in the work directory and are measured
    HOME: t.home,
    XDG_CACHE_HOME: path.join(t.home, ".cache"),
    XDG_CONFIG_HOME: path.join(t.home, ".config"),
    XDG_DATA_HOME: path.join(t.home, ".local", "share"),
    COFFER_PASSPHRASE: PASSWORD,
    RESTIC_PASSWORD: PASSWORD,
    BORG_PASSPHRASE: PASSWORD,
    BORG_DISPLAY_PASSPHRASE: "no",
    BORG_RELOCATED_REPO_ACCESS_IS_OK: "yes",
  };
}

export function initCmd(t: Tool, repo: Repo): Cmd {
  const { cwd, env } = repo;
  switch (t.name) {
    case "coffer":
      // no KDF flags: the figures are what a user of the defaults gets (the settings line reads them back)
      return { cmd: process.execPath, args: [COFFER_BIN, ...repo.coffer, "create"], cwd, env };
    case "restic":
      return { cmd: "restic", args: [...repo.restic, "init", "-q"], cwd, env };
    case "borg":
      return { cmd: "borg", args: ["init", "--encryption", "repokey-blake2", borgRepo(repo)], cwd, env };
  }
}

export function backupCmd(t: Tool, repo: Repo, cwd: string, rel: string, label: string): Cmd {
  const { env } = repo;
  switch (t.name) {
    case "coffer":
      return { cmd: process.execPath, args: [COFFER_BIN, ...repo.coffer, "backup", "-q", rel], cwd, env };
    case "restic":
      return { cmd: "restic", args: [...repo.restic, "backup", "-q", rel], cwd, env };
    case "borg":
      return { cmd: "borg", args: ["create", `${borgRepo(repo)}::${label}`, rel], cwd, env };
  }
}

export function restoreCmd(t: Tool, repo: Repo, dir: string): Cmd {
  const { env } = repo;
  switch (t.name) {
    case "coffer":
      return { cmd: process.execPath, args: [COFFER_BIN, ...repo.coffer, "restore", "-q", "--to", dir], cwd: dir, env };
    case "restic":
      return { cmd: "restic", args: [...repo.restic, "restore", "latest", "--target", dir, "-q"], cwd: dir, env };
    case "borg":
      return { cmd: "borg", args: ["extract", `${borgRepo(repo)}::${t.lastArchive}`], cwd: dir, env };
  }
}

/** Runs one of the tool's commands untimed, in its environment. */
export function runCmd(t: Tool, c: Cmd, stdout: "pipe" | "ignore" = "pipe"): Promise<ExecResult> {
  return exec(c.cmd, c.args, { cwd: c.cwd, env: { ...toolEnv(t), ...c.env }, stdout });
}

/** Loads the tool's own program files into the page cache after a drop (not timed). */
export function warmCmd(t: Tool): Cmd {
  switch (t.name) {
    case "coffer":
      return { cmd: process.execPath, args: [COFFER_BIN, "--help"], cwd: ROOT };
    case "restic":
      return { cmd: "restic", args: ["version"], cwd: ROOT };
    case "borg":
      return { cmd: "borg", args: ["--version"], cwd: ROOT };
  }
}

/** Where a tool puts the restored tree of a backup of `cwd/rel`. */
export function restoredRoot(t: Tool, dir: string, rel: string): string {
  return t.name === "coffer" ? dir : path.join(dir, rel);
}

/** Whether a command's exit code counts as done: borg's 1 is "finished with warnings" (e.g. a file changed while read). */
export function succeeded(t: Tool, code: number): boolean {
  // coffer and restic exit 3 when some entries were unreadable: a failure here
  return code === 0 || (t.name === "borg" && code === 1);
}

/**
 * The settings a fresh repository got from the tool's defaults, for the
 * report's settings line: restic's repository version, coffer's encryption
 * and KDF; null when there is nothing to read back (borg) or it failed.
 */
export async function readSettings(t: Tool, repo: Repo): Promise<string | null> {
  if (t.name === "restic") {
    const cfg = await runCmd(t, { cmd: "restic", args: [...repo.restic, "cat", "config"], cwd: repo.cwd, env: repo.env });
    const v = /"version":\s*(\d+)/.exec(cfg.stdout)?.[1];
    return v === undefined ? null : `repository v${v}` + (v === "1" ? ", no compression" : ", compression auto");
  }
  if (t.name === "coffer") {
    const info = await runCmd(t, { cmd: process.execPath, args: [COFFER_BIN, ...repo.coffer, "info", "--json"], cwd: repo.cwd, env: repo.env });
    try {
      return String((JSON.parse(info.stdout) as { encryption?: unknown }).encryption);
    } catch {
      log(`coffer info --json gave no JSON (exit ${info.code}): the settings line says "defaults"`);
      return null;
    }
  }
  return null;
}

/** A tool not yet found, with nothing measured. */
export function newTool(name: ToolName, home: string): Tool {
  return {
    name,
    available: false,
    version: "",
    note: "",
    failed: false,
    home,
    lastArchive: "",
    measures: Object.fromEntries(Object.keys(PHASE_LABEL).map((p) => [p, []])) as unknown as Record<Phase, Measure[]>,
    repoSize: [],
    cacheSize: [],
  };
}

/**
 * Finds the tool and its version; restic and borg are apt-get installed when
 * missing (as root, unless --no-install). A tool still missing is returned
 * unavailable, with a note saying why.
 */
export async function setupTool(name: ToolName, install: boolean, home: string): Promise<Tool> {
  const t = newTool(name, home);
  if (name === "coffer") {
    if (!fs.existsSync(path.join(ROOT, "dist", "cli", "main.js"))) {
      t.note = "dist/cli/main.js missing: run `npm run build`";
      return t;
    }
    const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, "package.json"), "utf8")) as { version: string };
    const head = execSync("git", ["rev-parse", "--short", "HEAD"]);
    const dirty = execSync("git", ["status", "--porcelain", "--", "src", "bin"]);
    t.version = `coffer ${pkg.version}` + (head.code === 0 ? ` (${head.stdout}${dirty.stdout ? ", modified src" : ""})` : "") + `, node ${process.version}`;
    t.available = true;
    return t;
  }
  if (!hasCommand(name)) {
    const pkg = APT_PACKAGE[name];
    if (!install) {
      t.note = "not installed (--no-install)";
    } else if (process.getuid?.() !== 0 || !hasCommand("apt-get")) {
      t.note = `not installed, and cannot apt-get install ${pkg} (needs root and apt-get)`;
    } else {
      log(`${name} is missing: running apt-get install -y ${pkg}`);
      const aptEnv = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
      let r = await exec("apt-get", ["install", "-y", pkg], { env: aptEnv });
      if (r.code !== 0) {
        log(`apt-get install failed; running apt-get update, then apt-get install -y ${pkg} again`);
        await exec("apt-get", ["update"], { env: aptEnv });
        r = await exec("apt-get", ["install", "-y", pkg], { env: aptEnv });
      }
      log(r.code === 0 ? `installed ${pkg}` : `apt-get install ${pkg} failed: ${r.stderr.trim().split("\n").slice(-2).join(" | ")}`);
      if (r.code !== 0 || !hasCommand(name)) t.note = `missing: apt-get install ${pkg} failed`;
    }
    if (!hasCommand(name)) {
      log(`${name}: ${t.note}; going on without it`);
      return t;
    }
  }
  const v = execSync(name, name === "restic" ? ["version"] : ["--version"]);
  t.version = v.stdout.split("\n")[0]!.split(" ").slice(0, 2).join(" ");
  t.available = true;
  return t;
}
