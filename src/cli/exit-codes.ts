/**
 * The exit codes of coffer, in one place: their names, the documented table
 * (from which `--help` is made and against which docs/CLI.md is checked by
 * test/unit/exit-codes.test.ts), and which exit code each CofferError code
 * ends a command with. Commands return these names, never bare numbers.
 */
import type { ErrorCode } from "../util/errors.js";

export const ExitCode = {
  OK: 0,
  ERROR: 1,
  USAGE: 2,
  PARTIAL: 3,
  PLAN_CHANGED: 4,
  RECLAIMED: 5,
  NO_REPOSITORY: 10,
  LOCKED: 11,
  WRONG_PASSPHRASE: 12,
  INTERRUPTED: 130,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

export interface ExitCodeDoc {
  code: ExitCode;
  /** What `--help` says, in a few words. */
  summary: string;
  /** What docs/CLI.md's table says: the summary with the cases spelled out. */
  meaning: string;
}

/** Every exit code the program can end with, in order, as `--help` and docs/CLI.md give them. */
export const EXIT_CODES: readonly ExitCodeDoc[] = [
  { code: ExitCode.OK, summary: "success", meaning: "success" },
  {
    code: ExitCode.ERROR,
    summary: "error",
    meaning:
      "error (including damage found by `check`, an unknown snapshot prefix or path, a failed write to the repository such as `repository full`, `create` at a location that is not empty, `restore` to an existing archive file without `--force`, a repository configuration that was altered, or that says plaintext for a repository this client saw encrypted, a command that deletes or removes run with credentials that may not delete)",
  },
  {
    code: ExitCode.USAGE,
    summary: "usage error (also: no command given)",
    meaning:
      "usage error (bad option or argument, no command given, ambiguous snapshot prefix, no passphrase available, a passphrase given for a repository whose configuration says plaintext)",
  },
  {
    code: ExitCode.PARTIAL,
    summary: "finished, but some entries failed (they are named on stderr)",
    meaning:
      "finished, but some entries failed; each is named on stderr (and recorded in the snapshot for `backup`); for `ls` and `locate`, some snapshots could not be read (each is named)",
  },
  {
    code: ExitCode.PLAN_CHANGED,
    summary: "prune --apply: the repository changed since the plan",
    meaning: "`prune --apply`: the repository changed since the plan was made in a way that alters it (a snapshot of the plan is gone or removed, or a snapshot is new in a group the plan covers); nothing was removed",
  },
  {
    code: ExitCode.RECLAIMED,
    summary: "undelete: the snapshot's data is already reclaimed",
    meaning: "`undelete`: the removed snapshot cannot be taken back, because maintenance has reclaimed data it references or marked it for reclaiming (the blobs are named)",
  },
  { code: ExitCode.NO_REPOSITORY, summary: "no repository at the location", meaning: "no repository at the location" },
  { code: ExitCode.LOCKED, summary: "repository locked by another process", meaning: "repository locked by another process" },
  { code: ExitCode.WRONG_PASSPHRASE, summary: "wrong passphrase", meaning: "wrong passphrase" },
  { code: ExitCode.INTERRUPTED, summary: "interrupted", meaning: "interrupted (SIGINT/SIGTERM); a second signal exits at once" },
];

/** The exit code a command that fails with a CofferError of each code ends with. */
export const EXIT_OF_ERROR: Readonly<Record<ErrorCode, ExitCode>> = {
  USAGE: ExitCode.USAGE,
  NO_REPOSITORY: ExitCode.NO_REPOSITORY,
  REPOSITORY_EXISTS: ExitCode.ERROR,
  NOT_EMPTY: ExitCode.ERROR,
  EXISTS: ExitCode.ERROR,
  REPOSITORY_WRITE: ExitCode.ERROR,
  LOCKED: ExitCode.LOCKED,
  WRONG_PASSPHRASE: ExitCode.WRONG_PASSPHRASE,
  NO_PASSPHRASE: ExitCode.USAGE,
  CORRUPT: ExitCode.ERROR,
  NOT_FOUND: ExitCode.ERROR,
  READ_ONLY: ExitCode.ERROR,
  UNSUPPORTED: ExitCode.ERROR,
  SNAPSHOT_NOT_FOUND: ExitCode.ERROR,
  SNAPSHOT_AMBIGUOUS: ExitCode.USAGE,
  PATH_NOT_FOUND: ExitCode.ERROR,
  UNSAFE_PATH: ExitCode.ERROR,
  INTERRUPTED: ExitCode.INTERRUPTED,
  IO: ExitCode.ERROR,
  PLAN_CHANGED: ExitCode.PLAN_CHANGED,
  RECLAIMED: ExitCode.RECLAIMED,
};

/** The exit code of a CofferError's code. */
export function exitCodeOf(code: ErrorCode): ExitCode {
  return EXIT_OF_ERROR[code];
}

/** The "Exit codes:" section of `--help`, made from EXIT_CODES. */
export function exitCodesHelp(): string {
  return ["Exit codes:", ...EXIT_CODES.map((d) => `  ${String(d.code).padEnd(5)}${d.summary}`)].join("\n");
}

/** docs/CLI.md's table of exit codes, made from EXIT_CODES (the unit test compares the two). */
export function exitCodesMarkdown(): string {
  return ["| code | meaning |", "|---|---|", ...EXIT_CODES.map((d) => `| ${d.code} | ${d.meaning} |`)].join("\n");
}
