/**
 * A plugin process and the one gRPC connection it serves on its stdin and
 * stdout (docs/WIRE.md, "Transport"). The host is the gRPC client.
 *
 * Transport: grpc-js's client cannot be handed a connection (it dials its
 * target itself; the only hook, the channel credentials' secure connector,
 * is internal API and still wants a dialled socket first). So the host runs
 * a private bridge: a net.Server on a unix socket in a fresh 0700 temp
 * directory; the client dials `unix:<path>`; the first connection accepted
 * is piped both ways to the child's stdin/stdout, then the listener is
 * closed and the directory removed. A further connection that slips in
 * before that is destroyed at once. The connection is never re-dialled:
 * once it breaks (the plugin crashed, wrote garbage...), a reconnect finds
 * no listener and every call fails with UNAVAILABLE, which status.ts turns
 * into an IO error naming the plugin and how it ended.
 *
 * Channel options: idle timeout at its maximum (2^31-1 ms: larger values
 * overflow Node's timers and would fire at once), keepalive off (the
 * default), no retries (nothing to retry on, and it saves a copy of every
 * message), a local subchannel pool (the connection is this plugin's
 * alone), receive limit MAX_MESSAGE plus 64 KiB of headroom, send limit
 * MAX_MESSAGE (what a Go plugin accepts), and a 4 MiB flow-control window
 * (a local pipe: the 64 KiB default caps large transfers).
 *
 * Framing check: an HTTP/2 server's first frame is SETTINGS on stream 0. The
 * bridge looks at the plugin's first 9 bytes; anything else means the plugin
 * writes to its stdout what does not belong there (a log line...): the
 * connection is dropped, the process killed, and the error says so.
 *
 * Lifetime: one process per connector instance. The process is started
 * detached (its own process group), so that a Ctrl-C reaches only the host,
 * which then cancels its calls and closes its plugins in order (a store
 * plugin must outlive an interrupted backup long enough to drop its lock).
 * A plugin is killed (SIGKILL to its process group, so helpers it started
 * go too) on close() when Close and EOF did not end it within EXIT_GRACE_MS,
 * on its spec's AbortSignal, and on the host's 'exit'; if the host dies
 * harder than that, the plugin's stdin reaches EOF, which ends a
 * well-behaved plugin (docs/WIRE.md, "Lifetime").
 */
import { fileURLToPath } from "node:url";
import { existsSync } from "node:fs";
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { extname, join } from "node:path";
import { createInterface } from "node:readline";
import * as grpc from "@grpc/grpc-js";
import { CofferError } from "../../util/errors.js";
import type { ConnectorOptions } from "../records.js";
import { escapeControls } from "../../util/names.js";
import { MAX_MESSAGE } from "./wire.js";

export interface PluginSpec {
  /** Shown in every message about the plugin. */
  name: string;
  /** Run directly, or with this Node (process.execPath) when it ends in .js, .mjs, .cjs, .ts or .mts (Node 24 runs TypeScript by stripping types). */
  executable: string;
  args?: readonly string[] | undefined;
  /** Added to the run's environment (startPlugin's `run.env`). */
  env?: Readonly<Record<string, string>> | undefined;
  /** Deadline of unary calls, ms (default 60 s). */
  timeoutMs?: number | undefined;
  /** Kills the process when aborted. */
  signal?: AbortSignal | undefined;
  /** Where the plugin's stderr lines go (default: process.stderr, prefixed with `[plugin NAME] `). */
  onStderr?: ((line: string) => void) | undefined;
}

export interface PluginExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** The process could not be started. */
  error?: Error | undefined;
}

const DEFAULT_TIMEOUT_MS = 60_000;
/** How long close() waits for the process to exit on its own before SIGKILL. */
const EXIT_GRACE_MS = 2_000;
/** Deadline of the Close call made by close(). */
const CLOSE_DEADLINE_MS = 2_000;

const CHANNEL_OPTIONS: grpc.ChannelOptions = {
  "grpc.client_idle_timeout_ms": 2 ** 31 - 1,
  "grpc.max_receive_message_length": MAX_MESSAGE + 64 * 1024,
  "grpc.max_send_message_length": MAX_MESSAGE,
  "grpc.enable_retries": 0,
  "grpc.use_local_subchannel_pool": 1,
  "grpc-node.flow_control_window": 4 << 20,
};

const STDERR_TAIL = 40;

const live = new Set<ChildProcess>();
let exitHook = false;
function track(child: ChildProcess): void {
  live.add(child);
  if (exitHook) return;
  exitHook = true;
  process.on("exit", () => {
    for (const c of live) killGroup(c);
  });
}

/** SIGKILL to the plugin's process group (it leads one: detached), so that helpers it started go too. */
function killGroup(child: ChildProcess): void {
  if (child.pid === undefined) return;
  try {
    if (process.platform === "win32") throw new Error("no process groups");
    process.kill(-child.pid, "SIGKILL");
  } catch {
    child.kill("SIGKILL");
  }
}

/**
 * Starts a plugin and its bridge; rejects (IO) when the executable cannot be
 * started. The plugin's environment is the run's (`run.env`, none without
 * it: never the host process's) plus its spec's; the bridge's socket is in
 * the run's scratch directory (`run.tmpDir`, default os.tmpdir()).
 */
export async function startPlugin(spec: PluginSpec, run: Pick<ConnectorOptions, "env" | "tmpDir"> = {}): Promise<PluginProcess> {
  const dir = await mkdtemp(join(run.tmpDir ?? tmpdir(), "coffer-plugin-"));
  const p = new PluginProcess(spec, dir, { ...run.env, ...spec.env });
  try {
    await p.started();
  } catch (e) {
    await p.close();
    throw e;
  }
  return p;
}

export class PluginProcess {
  readonly name: string;
  readonly timeoutMs: number;
  /** Resolves once the process has exited (or failed to start); never rejects. */
  readonly exited: Promise<PluginExit>;
  /** Resolves once the process has exited and its stdio streams are closed (so its last stderr lines are in). */
  readonly closed: Promise<void>;
  /** Set once the process has exited. */
  exit: PluginExit | undefined;
  /** What the plugin did wrong on its connection, when it did (e.g. non-HTTP/2 bytes on its stdout). */
  fault: string | undefined;
  /** The gRPC client on the plugin's connection (any service: calls name their method path). */
  readonly client: grpc.Client;

  private readonly child: ChildProcess;
  private readonly server: Server;
  private readonly spawned: Promise<void>;
  private readonly listening: Promise<void>;
  private conn: Socket | undefined;
  private connEnded = false;
  private closing: Promise<void> | undefined;
  private dirRemoved: Promise<void> | undefined;
  private readonly stderrTail: string[] = [];

  /** `dir`: the bridge's fresh directory; `env`: the plugin's whole environment. */
  constructor(
    spec: PluginSpec,
    private readonly dir: string,
    env: Readonly<Record<string, string | undefined>>,
  ) {
    this.name = spec.name;
    this.timeoutMs = spec.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const path = join(dir, "s");
    const isScript = [".js", ".mjs", ".cjs", ".ts", ".mts"].includes(extname(spec.executable));
    const cmd = isScript ? process.execPath : spec.executable;
    const args = isScript ? [...sdkPreload(), spec.executable, ...(spec.args ?? [])] : [...(spec.args ?? [])];
    this.child = spawn(cmd, args, { stdio: ["pipe", "pipe", "pipe"], env, detached: true, windowsHide: true });
    track(this.child);
    const child = this.child;
    let resolveExit!: (e: PluginExit) => void;
    this.exited = new Promise((r) => (resolveExit = r));
    const exited = (e: PluginExit) => {
      if (this.exit) return;
      this.exit = e;
      live.delete(child);
      resolveExit(e);
    };
    this.spawned = new Promise<void>((resolve, reject) => {
      child.once("spawn", resolve);
      child.once("error", (err) => {
        exited({ code: null, signal: null, error: err });
        reject(new CofferError("IO", `plugin ${this.name}: cannot start ${cmd}: ${err.message}`, { plugin: this.name }, { cause: err }));
      });
    });
    this.spawned.catch(() => {});
    child.on("exit", (code, signal) => exited({ code, signal }));
    this.closed = new Promise((resolve) =>
      child.on("close", () => {
        this.dropConnection();
        resolve();
      }),
    );
    child.stdin!.on("error", () => {}); // EPIPE once the plugin is gone: the exit tells the story
    child.stdout!.on("error", () => {});
    const onStderr = spec.onStderr ?? ((line: string) => process.stderr.write(`${escapeControls(`[plugin ${this.name}] ${line}`)}\n`));
    createInterface({ input: child.stderr!, crlfDelay: Infinity }).on("line", (line) => {
      this.stderrTail.push(line);
      if (this.stderrTail.length > STDERR_TAIL) this.stderrTail.shift();
      onStderr(line);
    });

    this.server = createServer((s) => this.accept(s));
    this.server.on("error", () => {});
    this.listening = new Promise<void>((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(path, () => resolve());
    });
    this.listening.catch(() => {});
    this.client = new grpc.Client(`unix:${path}`, grpc.credentials.createInsecure(), CHANNEL_OPTIONS);

    if (spec.signal) {
      const onAbort = () => this.kill();
      if (spec.signal.aborted) onAbort();
      else spec.signal.addEventListener("abort", onAbort, { once: true });
      void this.exited.then(() => spec.signal?.removeEventListener("abort", onAbort));
    }
  }

  /** Resolves once the process runs and the bridge listens. */
  async started(): Promise<void> {
    await this.spawned;
    try {
      await this.listening;
    } catch (e) {
      throw new CofferError("IO", `plugin ${this.name}: cannot listen on ${this.dir}: ${(e as Error).message}`, { plugin: this.name }, { cause: e });
    }
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** Whether the connection is gone (the plugin exited, closed it, or broke it). */
  get broken(): boolean {
    return this.exit !== undefined || this.connEnded || this.fault !== undefined;
  }

  /** How the plugin ended, for messages: "exited with code 3 (last stderr: ...)". */
  describeExit(): string {
    const e = this.exit;
    let s: string;
    if (!e) s = "is still running";
    else if (e.error) s = `could not be started (${e.error.message})`;
    else if (e.signal) s = `was killed by ${e.signal}`;
    else s = `exited with code ${e.code}`;
    // The last line that names an error says more than a runtime's closing banner.
    const lines = this.stderrTail.filter((l) => l.trim() !== "");
    const tail = lines.findLast((l) => /error|panic|fatal|exception/i.test(l)) ?? lines.at(-1);
    return tail !== undefined && e ? `${s}; its last words on stderr: ${JSON.stringify(tail.trim())}` : s;
  }

  /** Kills the process (and its process group) now, with SIGKILL. */
  kill(): void {
    if (this.exit === undefined) killGroup(this.child);
    this.dropConnection();
  }

  /**
   * Ends the plugin: the Close call (best effort, short deadline) when the
   * connection is alive, then EOF, a wait for the exit up to EXIT_GRACE_MS,
   * then SIGKILL. Safe to call more than once, and after a crash.
   */
  close(closeCall?: (deadline: Date) => Promise<unknown>): Promise<void> {
    return (this.closing ??= this.doClose(closeCall));
  }

  private async doClose(closeCall?: (deadline: Date) => Promise<unknown>): Promise<void> {
    if (closeCall && !this.broken && this.conn) {
      await closeCall(new Date(Date.now() + Math.min(CLOSE_DEADLINE_MS, this.timeoutMs))).catch(() => {});
    }
    this.client.close();
    this.dropConnection();
    if (this.exit === undefined) {
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<"late">((r) => (timer = setTimeout(() => r("late"), EXIT_GRACE_MS)));
      const r = await Promise.race([this.exited, late]);
      clearTimeout(timer);
      if (r === "late") this.kill();
    }
    await this.exited;
    await this.removeDir();
  }

  private accept(s: Socket): void {
    if (this.conn || this.broken) {
      s.destroy();
      return;
    }
    this.conn = s;
    this.server.close();
    void this.removeDir();
    const stdin = this.child.stdin!;
    const stdout = this.child.stdout!;
    s.on("error", () => this.dropConnection());
    s.on("close", () => this.dropConnection());
    s.pipe(stdin);
    // The plugin's first 9 bytes must be an HTTP/2 SETTINGS frame header on stream 0.
    let head = Buffer.alloc(0);
    const sniff = (b: Buffer) => {
      head = Buffer.concat([head, b]);
      if (head.length < 9) return;
      stdout.off("data", sniff);
      stdout.pause();
      const len = head.readUIntBE(0, 3);
      const settings = head[3] === 0x04 && (head[4]! & 0x01) === 0 && head.readUInt32BE(5) === 0 && len % 6 === 0 && len <= 16_384;
      if (!settings) {
        this.fault = `wrote something other than gRPC (HTTP/2) to its stdout, which is reserved for the connection: ${JSON.stringify(head.subarray(0, 64).toString("latin1"))}`;
        this.kill();
        return;
      }
      s.write(head);
      stdout.pipe(s);
      stdout.resume();
    };
    stdout.on("data", sniff);
    stdout.on("end", () => {
      if (head.length < 9 && head.length > 0 && !this.fault) {
        this.fault = `wrote something other than gRPC (HTTP/2) to its stdout: ${JSON.stringify(head.toString("latin1"))}`;
      }
      s.end();
    });
  }

  private dropConnection(): void {
    if (this.connEnded) return;
    this.connEnded = true;
    this.server.close();
    this.conn?.destroy();
    this.child.stdin?.end();
    void this.removeDir();
  }

  private removeDir(): Promise<void> {
    return (this.dirRemoved ??= rm(this.dir, { recursive: true, force: true }).catch(() => {}));
  }
}

/**
 * For JavaScript plugins: preload the hook that resolves `coffer/sdk` to
 * this installation's SDK (sdk-resolve.ts beside this file), so that an installed
 * package needs to carry only its own code. Absent when running from
 * sources (tests), where plugins import the SDK by relative path.
 */
function sdkPreload(): string[] {
  const hook = new URL("./sdk-resolve.js", import.meta.url);
  return existsSync(fileURLToPath(hook)) ? ["--import", hook.href] : [];
}
