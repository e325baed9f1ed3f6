// Child processes, progress logging and the work directory's cleanup. Every
// child runs in its own process group, so that a stop (Ctrl-C, SIGTERM)
// reaches the tool under /usr/bin/time and the work directory is removed.

import { spawn, spawnSync } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { KiB } from "./units.ts";

/** The project's root (bench/..). */
export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const T0 = performance.now();

function clock(): string {
  const s = Math.round((performance.now() - T0) / 1000);
  return `${String(Math.floor(s / 60)).padStart(2, "0")}:${String(s % 60).padStart(2, "0")}`;
}

/** Progress goes to stderr, stamped with the minutes and seconds since the start. */
export function log(msg: string): void {
  process.stderr.write(`[bench ${clock()}] ${msg}\n`);
}

let workDir: string | null = null;
let keepWorkDir = false;
let stopping = false;
const children = new Set<ChildProcess>();

/** True once a signal has started the stop: long loops return early. */
export function isStopping(): boolean {
  return stopping;
}

export function rmrf(p: string): void {
  try {
    fs.rmSync(p, { recursive: true, force: true, maxRetries: 3 });
  } catch {
    spawnSync("chmod", ["-R", "u+rwX", p], { stdio: "ignore" });
    fs.rmSync(p, { recursive: true, force: true, maxRetries: 3 });
  }
}

/** Creates the work directory under `base`; cleanup() removes it unless `keep`. */
export function createWorkDir(base: string, keep: boolean): string {
  fs.mkdirSync(base, { recursive: true });
  const dir = fs.mkdtempSync(path.join(base, "coffer-bench-"));
  workDir = dir;
  keepWorkDir = keep;
  return dir;
}

export function cleanup(): void {
  if (workDir === null) return;
  const dir = workDir;
  workDir = null;
  if (keepWorkDir) {
    log(`keeping ${dir} (--keep)`);
    return;
  }
  try {
    rmrf(dir);
  } catch (e) {
    process.stderr.write(`bench: could not remove ${dir}: ${(e as Error).message}\n`);
  }
}

export function killChildren(): void {
  for (const c of children) {
    if (c.pid !== undefined && c.exitCode === null) {
      try {
        process.kill(-c.pid, "SIGTERM"); // the whole process group (detached)
      } catch {
        /* gone */
      }
    }
  }
}

async function stop(signal: NodeJS.Signals): Promise<void> {
  if (stopping) return;
  stopping = true;
  log(`${signal}: stopping, removing the work directory`);
  const waits = [...children].map((c) => new Promise<void>((res) => c.once("close", () => res())));
  killChildren();
  await Promise.race([Promise.all(waits), new Promise((res) => setTimeout(res, 5000))]);
  cleanup();
  process.exit(signal === "SIGINT" ? 130 : 143);
}

/** On SIGINT/SIGTERM/SIGHUP: stop the children, remove the work directory, exit 130/143; on exit: the same, quietly. */
export function handleSignals(): void {
  for (const s of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.on(s, () => void stop(s));
  process.on("exit", () => {
    killChildren();
    cleanup();
  });
}

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
  wall: number; // seconds
}

export interface ExecOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  stdout?: "pipe" | "ignore";
}

const TAIL = 64 * KiB;

/** Runs a command to its end, keeping the last 64 KiB of its output and its wall time. */
export function exec(cmd: string, args: readonly string[], o: ExecOptions = {}): Promise<ExecResult> {
  return new Promise((resolve) => {
    const start = performance.now();
    const child = spawn(cmd, args, {
      cwd: o.cwd ?? ROOT,
      env: o.env ?? process.env,
      stdio: ["ignore", o.stdout ?? "pipe", "pipe"],
      detached: true, // own process group, so a stop reaches the tool under /usr/bin/time
    });
    children.add(child);
    let stdout = "";
    let stderr = "";
    child.stdout?.on("data", (d: Buffer) => {
      stdout = (stdout + d.toString()).slice(-TAIL);
    });
    child.stderr?.on("data", (d: Buffer) => {
      stderr = (stderr + d.toString()).slice(-TAIL);
    });
    let done = false;
    const finish = (code: number): void => {
      if (done) return;
      done = true;
      children.delete(child);
      if (stopping) return; // stop() exits the process
      resolve({ code, stdout, stderr, wall: (performance.now() - start) / 1000 });
    };
    child.on("error", (e) => {
      stderr += String(e.message);
      finish(127);
    });
    child.on("close", (code, signal) => finish(code ?? (signal ? 128 : 1)));
  });
}

export function execSync(cmd: string, args: readonly string[], cwd?: string): { code: number; stdout: string } {
  const r = spawnSync(cmd, args, { cwd: cwd ?? ROOT, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  return { code: r.status ?? (r.error ? 127 : 1), stdout: (r.stdout ?? "").trim() };
}

export function hasCommand(name: string): boolean {
  return execSync("sh", ["-c", `command -v ${name}`]).code === 0;
}

/** Disk usage of a tree in bytes (du -sb), NaN when du fails. */
export function duBytes(p: string): number {
  const r = execSync("du", ["-sb", p]);
  const n = Number(r.stdout.split(/\s+/)[0]);
  return r.code === 0 && Number.isFinite(n) ? n : NaN;
}
