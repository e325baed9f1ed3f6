/**
 * The standard-stream connectors: `stdin:NAME` imports what is piped in as
 * one file NAME (a STREAM source: it can be read once), and `stdout:`
 * exports the content of the files it is given, one after the other, to
 * standard output.
 */
import { hostname } from "node:os";
import { LocationFlag } from "../flags.js";
import type { ExportRecord, ExportResult, Exporter, FileInfo, ImportOptions, Importer, ImportRecord } from "../records.js";
import { CofferError, throwIfAborted } from "../../util/errors.js";

/** The NAME of `stdin:NAME` as a snapshot pathname: relative, '/'-separated, no `.` or `..`. */
function stdinPathname(name: string): string {
  const parts = name.split("/").filter((p) => p !== "");
  if (parts.length === 0) throw new CofferError("USAGE", 'stdin: needs a file name, as in "stdin:dump.sql"');
  for (const p of parts) if (p === "." || p === ".." || p.includes("\0")) throw new CofferError("USAGE", `stdin: invalid file name "${name}"`);
  return `/${parts.join("/")}`;
}

function info(name: string, kind: "dir" | "file", mtimeNs: bigint): FileInfo {
  return {
    name,
    kind,
    size: 0,
    mode: kind === "dir" ? 0o755 : 0o644,
    mtimeNs,
    dev: 0n,
    ino: 0n,
    uid: process.getuid?.() ?? 0,
    gid: process.getgid?.() ?? 0,
    nlink: 1,
  };
}

/** Why a snapshot pathname is unsafe ('/'-rooted, no '.', '..' or empty component, no NUL), or undefined. */
function unsafePathname(p: string): string | undefined {
  if (!p.startsWith("/")) return `unsafe path ${JSON.stringify(p)}: not absolute`;
  if (p.includes("\0")) return `unsafe path ${JSON.stringify(p)}: contains NUL`;
  if (p !== "/" && p.slice(1).split("/").some((c) => c === "" || c === "." || c === "..")) return `unsafe path ${JSON.stringify(p)}`;
  return undefined;
}

async function* abortable(source: AsyncIterable<Uint8Array>, signal: AbortSignal | undefined): AsyncGenerator<Uint8Array> {
  for await (const b of source) {
    throwIfAborted(signal);
    yield b;
  }
}

export class StdinImporter implements Importer {
  readonly origin = hostname();
  readonly type = "stdin";
  readonly root: string;
  readonly flags = LocationFlag.STREAM;
  private used = false;

  constructor(
    name: string,
    private readonly input: NodeJS.ReadableStream = process.stdin,
  ) {
    this.root = stdinPathname(name);
  }

  async ping(): Promise<void> {}

  async *import(opts: ImportOptions = {}): AsyncGenerator<ImportRecord> {
    throwIfAborted(opts.signal);
    if (this.used) throw new CofferError("USAGE", "stdin can be imported only once");
    this.used = true;
    const now = BigInt(Date.now()) * 1_000_000n;
    yield { pathname: "/", fileInfo: info("", "dir", now) };
    throwIfAborted(opts.signal);
    const parts = this.root.split("/").slice(1, -1);
    for (let i = 1; i <= parts.length; i++) yield { pathname: `/${parts.slice(0, i).join("/")}`, fileInfo: info(parts[i - 1]!, "dir", now) };
    let opened = false;
    const input = this.input;
    yield {
      pathname: this.root,
      fileInfo: info(this.root.slice(this.root.lastIndexOf("/") + 1), "file", now),
      open: async () => {
        if (opened) throw new CofferError("USAGE", "stdin can be read only once");
        opened = true;
        return abortable(input as AsyncIterable<Uint8Array>, opts.signal);
      },
    };
  }

  async close(): Promise<void> {}
}

export class StdoutExporter implements Exporter {
  readonly origin = hostname();
  readonly type = "stdout";
  readonly root = "-";
  readonly flags = LocationFlag.STREAM;
  /** Files are written whole and in the order export() was called. */
  private chain: Promise<unknown> = Promise.resolve();

  constructor(private readonly output: NodeJS.WritableStream = process.stdout) {}

  async ping(): Promise<void> {}

  export(record: ExportRecord, opts: ImportOptions = {}): Promise<ExportResult> {
    const run = async (): Promise<ExportResult> => {
      throwIfAborted(opts.signal);
      // Nothing is written for a path that could not be restored anywhere else either.
      const bad = unsafePathname(record.pathname);
      if (bad) return { pathname: record.pathname, error: bad };
      if (record.fileInfo.kind !== "file" || !record.content) return { pathname: record.pathname };
      for await (const p of record.content()) {
        throwIfAborted(opts.signal);
        await this.write(p.data ?? new Uint8Array(p.length));
      }
      return { pathname: record.pathname };
    };
    const p = this.chain.then(run, run);
    this.chain = p.catch(() => {});
    return p;
  }

  private write(data: Uint8Array): Promise<void> {
    return new Promise((resolve, reject) => {
      this.output.write(data, (e) => (e ? reject(e) : resolve()));
    });
  }

  async finish(): Promise<void> {
    await this.chain;
  }

  async close(): Promise<void> {}
}
