/**
 * A plugin's stdout is the wire (docs/WIRE.md, "Transport"): one HTTP/2
 * connection rides on stdin+stdout, and one stray byte on stdout breaks it.
 * So before anything else the entry points send everything user code prints
 * to stderr, and keep a private way to the real stdout for the wire:
 * - the global console's methods are replaced by those of a Console on
 *   stderr (console.log, info, debug, dir, table, count, time...);
 * - process.stdout.write is replaced by a function writing to stderr, so
 *   libraries that write to process.stdout directly are caught too;
 * - the wire writes through the original write method, bound to the real
 *   stream, captured before the swap.
 * Writes straight to file descriptor 1 (fs.writeSync(1, ...)) cannot be
 * caught: a plugin must not make them.
 */
import { Console } from "node:console";
import { Duplex, Readable, Writable } from "node:stream";

type WriteFn = (chunk: Uint8Array | string, cb?: (err?: Error | null) => void) => boolean;

let realWrite: WriteFn | undefined;

/**
 * Sends whatever user code prints to stdout to stderr from now on (idempotent).
 * The entry points call it first; a plugin that prints during its own
 * start-up, before calling one, may call it earlier.
 */
export function protectStdout(): void {
  if (realWrite !== undefined) return;
  const out = process.stdout;
  const original = out.write;
  realWrite = (chunk, cb) => (original as (c: Uint8Array | string, cb?: (err?: Error | null) => void) => boolean).call(out, chunk, cb);
  const err = process.stderr;
  out.write = function write(chunk: Uint8Array | string, encoding?: unknown, cb?: unknown): boolean {
    // The same overloads as Writable.write: (chunk, cb) or (chunk, encoding, cb).
    if (typeof encoding === "function") return err.write(chunk, encoding as (e?: Error | null) => void);
    return err.write(chunk, encoding as BufferEncoding, cb as ((e?: Error | null) => void) | undefined);
  } as typeof out.write;
  const onStderr = new Console({ stdout: err, stderr: err });
  const target = console as unknown as Record<string, unknown>;
  const source = onStderr as unknown as Record<string, unknown>;
  for (const key of Object.keys(source)) {
    if (typeof source[key] === "function") target[key] = source[key];
  }
}

/**
 * The wire: reads stdin, writes the real stdout. protectStdout() must have
 * been called. `onEnd` is called once when the connection ends: stdin's EOF
 * or error, or a write error on stdout (the host went away).
 */
export function wireConnection(onEnd: (why: string) => void): Duplex {
  const write = realWrite;
  if (write === undefined) throw new Error("protectStdout() must be called before wireConnection()");
  let ended = false;
  const end = (why: string) => {
    if (ended) return;
    ended = true;
    onEnd(why);
  };
  const output = new Writable({
    write(chunk: Buffer, _enc, cb) {
      write(chunk, (e) => cb(e ?? null));
    },
    writev(chunks, cb) {
      write(Buffer.concat(chunks.map((c) => c.chunk as Buffer)), (e) => cb(e ?? null));
    },
  });
  output.on("error", (e) => end(`stdout: ${e.message}`));
  process.stdout.on("error", (e) => end(`stdout: ${e.message}`));
  const input: Readable = process.stdin;
  input.on("end", () => end("stdin closed"));
  input.on("close", () => end("stdin closed"));
  input.on("error", (e) => end(`stdin: ${e.message}`));
  const conn = Duplex.from({ readable: input, writable: output });
  conn.on("error", (e) => end(`connection: ${e.message}`));
  conn.on("close", () => end("connection closed"));
  return conn;
}

/** What connectors get as the standard streams in a plugin: nothing to read, and a stdout that refuses writes (it is the wire). */
export function pluginStdio(): { stdin: NodeJS.ReadableStream; stdout: NodeJS.WritableStream } {
  const stdin = Readable.from([]);
  const stdout = new Writable({
    write(_chunk, _enc, cb) {
      cb(new Error("a plugin cannot write to its standard output: it carries the plugin wire"));
    },
  });
  return { stdin, stdout };
}

/** Exits once what was written to stderr so far is flushed (stderr may be a pipe, written asynchronously). */
export function exitAfterStderr(code: number): void {
  process.stderr.write("", () => process.exit(code));
  // In case stderr is gone and the callback never comes.
  setTimeout(() => process.exit(code), 2000).unref();
}
