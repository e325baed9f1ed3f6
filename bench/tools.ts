// The tools under test and how each is invoked: its commands (init, backup,
// restore, a warm-up), its environment (a private HOME, the password), how it
// is found or installed, the settings read back from its repository, and the
// record of what was measured of it.

import * as fs from "node:fs";
import * as path from "node:path";
import { ROOT, exec, execSync, hasCommand, log } from "./process.ts";

export type ToolName = "coffer" | "restic" | "borg";
export const ALL_TOOLS: readonly ToolName[] = ["coffer", "restic", "borg"];
export type Phase = "first" | "nochange" | "change" | "restore" | "big";
export const PHASES: readonly Phase[] = ["first", "nochange", "change", "restore", "big"];
export const PHASE_LABEL: Record<Phase, string> = {
  first: "first backup",
  nochange: "no-change backup",
  change: "1% change backup",
  restore: "restore",
  big: "big file backup",
};

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
}

const PASSWORD = "coffer-bench-password";
export const COFFER_BIN = path.join(ROOT, "bin", "coffer.js");
const APT_PACKAGE: Record<ToolName, string> = { coffer: "", restic: "restic", borg: "borgbackup" };

/** The tool's environment: none of the caller's repository settings, a private HOME, the password. */
export function toolEnv(t: Tool): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const k of ["COFFER_REPOSITORY", "RESTIC_REPOSITORY", "RESTIC_REPOSITORY_FILE", "RESTIC_PASSWORD_FILE", "RESTIC_PASSWORD_COMMAND", "BORG_REPO", "BORG_PASSCOMMAND", "BORG_BASE_DIR", "RESTIC_CACHE_DIR", "BORG_CACHE_DIR", "BORG_CONFIG_DIR", "BORG_SECURITY_DIR", "BORG_KEYS_DIR"]) {
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

export function initCmd(t: Tool, repo: string): Cmd {
  const cwd = path.dirname(repo);
  switch (t.name) {
    case "coffer":
      // no KDF flags: the figures are what a user of the defaults gets (the settings line reads them back)
      return { cmd: process.execPath, args: [COFFER_BIN, "at", repo, "create"], cwd };
    case "restic":
      return { cmd: "restic", args: ["-r", repo, "init", "-q"], cwd };
    case "borg":
      return { cmd: "borg", args: ["init", "--encryption", "repokey-blake2", repo], cwd };
  }
}

export function backupCmd(t: Tool, repo: string, cwd: string, rel: string, label: string): Cmd {
  switch (t.name) {
    case "coffer":
      return { cmd: process.execPath, args: [COFFER_BIN, "at", repo, "backup", "-q", rel], cwd };
    case "restic":
      return { cmd: "restic", args: ["-r", repo, "backup", "-q", rel], cwd };
    case "borg":
      return { cmd: "borg", args: ["create", `${repo}::${label}`, rel], cwd };
  }
}

export function restoreCmd(t: Tool, repo: string, dir: string): Cmd {
  switch (t.name) {
    case "coffer":
      return { cmd: process.execPath, args: [COFFER_BIN, "at", repo, "restore", "-q", "--to", dir], cwd: dir };
    case "restic":
      return { cmd: "restic", args: ["-r", repo, "restore", "latest", "--target", dir, "-q"], cwd: dir };
    case "borg":
      return { cmd: "borg", args: ["extract", `${repo}::${t.lastArchive}`], cwd: dir };
  }
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
export async function readSettings(t: Tool, repo: string): Promise<string | null> {
  if (t.name === "restic") {
    const cfg = await exec("restic", ["-r", repo, "cat", "config"], { env: toolEnv(t) });
    const v = /"version":\s*(\d+)/.exec(cfg.stdout)?.[1];
    return v === undefined ? null : `repository v${v}` + (v === "1" ? ", no compression" : ", compression auto");
  }
  if (t.name === "coffer") {
    const info = await exec(process.execPath, [COFFER_BIN, "at", repo, "info", "--json"], { env: toolEnv(t) });
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
    measures: { first: [], nochange: [], change: [], restore: [], big: [] },
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
