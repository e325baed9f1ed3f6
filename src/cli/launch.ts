/**
 * What the launcher (bin/coffer.js) re-executes Node with; kept here so that
 * it is typed and tested. The launcher replaces its process (same PID) once.
 */
import { setFlagsFromString } from "node:v8";

/**
 * A small young generation: coffer churns through short-lived buffers and
 * records, and V8's default lets the heap grow for nothing. --expose-gc
 * lets threads collect after so many MiB of buffers (src/util/gc.ts): they
 * live outside the V8 heap, which does not see them pile up.
 *
 * --heap-growing-percent=50: after each full collection V8 lets the old
 * generation grow to 1.5x what survived before it collects again. Its own
 * factor (up to 4x on a small heap) let records and parent trees that
 * outlive two scavenges, promoted and dead soon after, fill the main heap.
 * Both lower peak RSS at no cost in time (docs/PERFORMANCE.md).
 */
export const V8_FLAGS: readonly string[] = ["--max-semi-space-size=4", "--heap-growing-percent=50", "--expose-gc"];

/**
 * Gives V8 back its own heap growth for the rest of the process, for a
 * command whose main thread keeps a steady flow of records and reads alive
 * for a while (restore's lookahead): at 1.5x it ran a full collection every
 * few MiB promoted, each marking the whole index, which cost more CPU time
 * than the memory it saved was worth (docs/PERFORMANCE.md, "Remote stores").
 */
export function useDefaultHeapGrowth(): void {
  setFlagsFromString("--heap-growing-percent=0"); // 0: V8 picks the factor
}

/**
 * glibc's malloc: buffers from 128 KiB on get their own mapping, returned to
 * the system when freed. By default glibc raises that threshold after the
 * first large free (up to 32 MiB), and chunk and blob buffers then stay in
 * its arenas, which raises peak RSS (docs/PERFORMANCE.md). Other C
 * libraries ignore the variable.
 */
export const MMAP_THRESHOLD = "glibc.malloc.mmap_threshold=131072";

/** The environment to re-execute with: `env` plus the malloc threshold, unless the user set one. */
export function launchEnv(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const t = env.GLIBC_TUNABLES;
  if (t?.includes("glibc.malloc.mmap_threshold")) return env;
  return { ...env, GLIBC_TUNABLES: t ? `${t}:${MMAP_THRESHOLD}` : MMAP_THRESHOLD };
}

/**
 * Whether re-executing with `env` passes every variable on unchanged. Node
 * decodes the environment as UTF-8, a byte that is not part of valid UTF-8
 * becoming U+FFFD, and hands the decoded strings to the new process: so a
 * variable that holds U+FFFD may have had other bytes, which re-executing
 * would lose. COFFER_PASSPHRASE's bytes are the passphrase (src/cli/passphrase.ts
 * reads them back from /proc/self/environ), so the launcher then carries on
 * without its flags rather than rewrite the environment.
 */
export function reexecKeepsEnvironment(env: NodeJS.ProcessEnv): boolean {
  for (const [k, v] of Object.entries(env)) if (k.includes("\uFFFD") || v?.includes("\uFFFD")) return false;
  return true;
}
