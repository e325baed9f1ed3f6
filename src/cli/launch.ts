/**
 * What the launcher (bin/coffer.js) re-executes Node with; kept here so that
 * it is typed and tested. The launcher replaces its process (same PID) once.
 */

/**
 * A small young generation: coffer churns through short-lived buffers and
 * records, and V8's default lets the heap grow by ~150 MiB for nothing
 * (measured on /usr/share: a no-change backup peaks at 190 MiB instead of
 * 360 MiB, in the same time). --expose-gc lets the worker threads collect
 * after each few dozen MiB of chunk buffers (they live outside the V8 heap,
 * which does not see them pile up).
 *
 * --heap-growing-percent=50: after each full collection V8 lets the old
 * generation grow to 1.5x what survived before it collects again. Its own
 * factor (up to 4x on a small heap) let a backup's main heap reach 94 MiB
 * for ~50 MiB live: records and parent trees that outlive two scavenges are
 * promoted and die soon after. Measured on /usr/share, alternated, cold:
 * peak RSS of a no-change backup 180-223 -> 160-165 MiB, a 1% change
 * 234-235 -> 202-207, a first backup 249-250 -> 230-239, a restore 239-255
 * -> 223-234 MiB; wall and CPU time within the machine's noise.
 */
export const V8_FLAGS: readonly string[] = ["--max-semi-space-size=4", "--heap-growing-percent=50", "--expose-gc"];

/**
 * glibc's malloc: buffers from 128 KiB on get their own mapping, returned to
 * the system when freed. By default glibc raises that threshold after the
 * first large free (up to 32 MiB), and chunk and blob buffers then stay in
 * its arenas: measured on /usr/share, peak RSS of a first backup 370-385 ->
 * 314-330 MiB and of a restore 279-290 -> 247-261 MiB, time unchanged within
 * noise. Other C libraries ignore the variable.
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
