/**
 * What a restore reports: an event per entry restored, failed or skipped,
 * and the totals it returns. One Outcome per restore() call.
 */
import type { Entry } from "../tree.js";

export interface RestoreEvent {
  type: "entry" | "error" | "skipped";
  path: string;
  message?: string;
  /**
   * For "error": what was thrown, when something was. Damaged content is a
   * CorruptError (code CORRUPT; `detail` and `data`: blob type, MAC,
   * packfile), also when a worker thread found it.
   */
  error?: Error;
}

export interface RestoreResult {
  files: number;
  dirs: number;
  others: number;
  bytes: number;
  errors: [string, string][];
}

/** Why an entry was not restored: what the user is told and, when something was thrown, the error behind it. */
export interface Failure {
  message: string;
  error?: Error;
}

export class Outcome {
  readonly result: RestoreResult = { files: 0, dirs: 0, others: 0, bytes: 0, errors: [] };

  constructor(private readonly onEvent: ((e: RestoreEvent) => void) | undefined) {}

  succeeded(path: string, e: Entry): void {
    const r = this.result;
    if (e.info.kind === "file") {
      r.files++;
      r.bytes += e.info.size;
    } else if (e.info.kind === "dir") r.dirs++;
    else r.others++;
    this.onEvent?.({ type: "entry", path });
  }

  failed(path: string, f: Failure): void {
    this.result.errors.push([path, f.message]);
    this.onEvent?.({ type: "error", path, message: f.message, ...(f.error ? { error: f.error } : {}) });
  }

  skipped(path: string, message: string): void {
    this.onEvent?.({ type: "skipped", path, message });
  }
}
