/**
 * The SDK's plugins seen from the wire: the plugfs example plugins
 * (dist/plugins/plugfs/*.js, built by `npm run build`) and a fixture plugin
 * are started as processes and driven by a host client written here directly
 * on @grpc/grpc-js and the .proto files (not through src/connectors/plugin
 * or wire.ts): the .proto files and docs/WIRE.md are the contract.
 *
 * grpc-js clients cannot dial a custom stream, so each plugin's stdin/stdout
 * is bridged to a unix socket the client dials.
 */
import * as grpc from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import { execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, promises as fsp } from "node:fs";
import { createServer, type Socket } from "node:net";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { xattrSyscalls } from "../../src/connectors/fs/xattr-native.js";
import { setXattr } from "../helpers/tree.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const DIST = path.join(ROOT, "dist");
const PLUGFS = (name: string) => path.join(DIST, "plugins", "plugfs", `${name}.js`);
const MiB = 1 << 20;

// The Go os.FileMode bits of docs/WIRE.md, "File modes".
const GO_DIR = 2 ** 31;
const GO_SYMLINK = 2 ** 27;
const GO_NAMED_PIPE = 2 ** 25;

const packageDef = loadSync(["connectors.proto", "importer.proto", "exporter.proto", "storage.proto"], {
  keepCase: true,
  longs: String,
  enums: Number,
  bytes: Buffer,
  defaults: true,
  oneofs: true,
  includeDirs: [path.join(ROOT, "proto")],
});
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const pkg = grpc.loadPackageDefinition(packageDef) as any;
const ImporterClient = pkg.importer.Importer as grpc.ServiceClientConstructor;
const ExporterClient = pkg.plakar.exporter.Exporter as grpc.ServiceClientConstructor;
const StoreClient = pkg.store.Store as grpc.ServiceClientConstructor;

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Msg = any;

let tmp: string;
let socketN = 0;
const running = new Set<Plugin>();

interface Plugin {
  client: grpc.Client;
  exited: Promise<number | null>;
  stderr(): string;
  /** Closes the client (the connection) and waits for the process to exit. */
  stop(): Promise<number | null>;
  /** Cuts the connection as a crashed host would (grpc-js keeps it while a call is open, even after close()). */
  drop(): void;
}

/** Starts a plugin process with its stdio bridged to a unix socket, and a client on it. */
async function startPlugin(script: string, Client: grpc.ServiceClientConstructor, args: string[] = []): Promise<Plugin> {
  const child = spawn(process.execPath, [script, ...args], { stdio: ["pipe", "pipe", "pipe"] });
  let err = "";
  child.stderr.on("data", (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  const sock = path.join(tmp, `plugin-${socketN++}.sock`);
  const conns: Socket[] = [];
  const bridge = createServer((conn) => {
    conns.push(conn);
    bridge.close(); // one connection, never re-dialled
    conn.pipe(child.stdin);
    child.stdout.pipe(conn);
    conn.on("error", () => child.stdin.destroy());
    child.stdin.on("error", () => {});
  });
  await new Promise<void>((resolve) => bridge.listen(sock, resolve));
  const client = new Client(`unix:${sock}`, grpc.credentials.createInsecure(), { "grpc.client_idle_timeout_ms": 24 * 3600 * 1000 });
  const p: Plugin = {
    client,
    exited,
    stderr: () => err,
    async stop() {
      // Not client.close(): grpc-js aliases the service's Close rpc as close().
      grpc.Client.prototype.close.call(client);
      const t = setTimeout(() => child.kill("SIGKILL"), 10_000);
      const code = await exited;
      clearTimeout(t);
      bridge.close();
      running.delete(p);
      return code;
    },
    drop() {
      for (const c of conns) c.destroy();
      child.stdin.end();
    },
  };
  running.add(p);
  return p;
}

function call<Res = Msg>(client: grpc.Client, method: string, req: Msg = {}): Promise<Res> {
  return new Promise((resolve, reject) => {
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    (client as any)[method](req, (err: grpc.ServiceError | null, res: Res) => (err ? reject(err) : resolve(res)));
  });
}

/** The status a call fails with. */
async function failure(p: Promise<unknown>): Promise<grpc.ServiceError> {
  try {
    await p;
  } catch (e) {
    return e as grpc.ServiceError;
  }
  throw new Error("the call succeeded");
}

/** Reads a server stream to its end: its messages, or the error it ended with. */
function readAll(stream: grpc.ClientReadableStream<Msg>): Promise<Msg[]> {
  return new Promise((resolve, reject) => {
    const out: Msg[] = [];
    stream.on("data", (m) => out.push(m));
    stream.on("error", reject);
    stream.on("end", () => resolve(out));
  });
}

async function openContent(client: grpc.Client, record: Msg): Promise<Buffer[]> {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const chunks = await readAll((client as any).Open({ record }));
  return chunks.map((c: Msg) => c.chunk as Buffer);
}

const initOptions = (cwd: string, noxattr = true) => ({ hostname: "host", os: "linux", arch: "amd64", cwd, maxconcurrency: "4", excludes: [], noxattr });

function wireTime(ns: bigint) {
  return { seconds: (ns / 1_000_000_000n).toString(), nanos: Number(ns % 1_000_000_000n) };
}

function fileInfo(name: string, mode: number, size: number, mtimeNs: bigint): Msg {
  return { name, size: String(size), mode, mod_time: wireTime(mtimeNs), dev: "0", ino: "0", uid: "0", gid: "0", nlink: 1, username: "", groupname: "", flags: 0 };
}

function record(pathname: string, fi: Msg, extra: Msg = {}): Msg {
  return { hasReader: false, pathname, error: "", isXattr: false, xattrName: "", xattrType: 0, target: "", fileInfo: fi, extendedAttributes: [], fileAttributes: 0, ...extra };
}

/** Whether user extended attributes work in `dir` (filesystem support); sets user.coffer on `file`. */
function xattrsWork(file: string): boolean {
  try {
    setXattr(file, "user.coffer", "hello");
    return true;
  } catch {
    return false;
  }
}

beforeAll(async () => {
  if (!existsSync(PLUGFS("importer"))) throw new Error("dist/plugins/plugfs is missing: run `npm run build` first");
  tmp = await fsp.mkdtemp(path.join(tmpdir(), "coffer-sdk-"));
});

afterAll(async () => {
  for (const p of [...running]) await p.stop();
  if (tmp) await fsp.rm(tmp, { recursive: true, force: true });
});

describe("plugfs importer plugin", () => {
  it("streams the tree's records with Go modes, sizes, mtimes and targets; Open gives the content in chunks of at most 1 MiB; Results release", async () => {
    const src = path.join(tmp, "src");
    await fsp.mkdir(path.join(src, "sub"), { recursive: true });
    const big = randomBytes(3 * MiB + 12345);
    await fsp.writeFile(path.join(src, "big.bin"), big);
    await fsp.writeFile(path.join(src, "sub", "small.txt"), "hello plugin\n");
    await fsp.writeFile(path.join(src, "empty"), "");
    await fsp.chmod(path.join(src, "sub", "small.txt"), 0o640);
    await fsp.chmod(path.join(src, "sub"), 0o750);
    await fsp.symlink("sub/small.txt", path.join(src, "link"));
    execFileSync("mkfifo", ["-m", "600", path.join(src, "fifo")]);
    const withXattr = xattrsWork(path.join(src, "sub", "small.txt"));
    await fsp.utimes(path.join(src, "sub", "small.txt"), 1_600_000_000.5, 1_600_000_000.5);

    const expected = new Map<string, { mode: number; size: number; mtimeNs: bigint; target: string }>();
    for (const rel of ["", "big.bin", "empty", "fifo", "link", "sub", "sub/small.txt"]) {
      const abs = rel === "" ? src : path.join(src, rel);
      const st = await fsp.lstat(abs, { bigint: true });
      const perm = Number(st.mode & 0o777n);
      const mode = st.isDirectory() ? GO_DIR + perm : st.isSymbolicLink() ? GO_SYMLINK + perm : st.isFIFO() ? GO_NAMED_PIPE + perm : perm;
      expected.set(rel === "" ? "/" : `/${rel}`, {
        mode,
        size: Number(st.size),
        mtimeNs: st.mtimeNs,
        target: st.isSymbolicLink() ? await fsp.readlink(abs) : "",
      });
    }

    const p = await startPlugin(PLUGFS("importer"), ImporterClient);
    const init = await call(p.client, "Init", { options: initOptions(tmp, !withXattr), proto: "plugfs", config: { location: `plugfs://${src}` } });
    expect(init).toMatchObject({ type: "plugfs", root: src, flags: 1 });
    expect(init.origin).not.toBe("");
    await call(p.client, "Ping");

    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    const imp = (p.client as any).Import() as grpc.ClientDuplexStream<Msg, Msg>;
    const records: Msg[] = [];
    const contents = new Map<string, Buffer[]>();
    let finished = 0;
    const ended = new Promise<void>((resolve, reject) => {
      imp.on("error", reject);
      imp.on("end", resolve);
    });
    const work: Promise<void>[] = [];
    imp.on("data", (m: Msg) => {
      if (m.finished) {
        finished++;
        // Every record is answered once its content is read: then the host closes its side.
        void Promise.all(work).then(() => imp.end());
        return;
      }
      const r = m.record;
      records.push(r);
      work.push(
        (async () => {
          // /empty is not opened: its Result alone releases it.
          if (r.hasReader && r.pathname !== "/empty") contents.set(r.isXattr ? `${r.pathname}#${r.xattrName}` : r.pathname, await openContent(p.client, r));
          imp.write({ result: { header: r, error: "" } });
        })(),
      );
    });
    await ended;
    expect(finished).toBe(1);

    const entries = records.filter((r) => !r.isXattr);
    expect(entries.map((r) => r.pathname)).toEqual(["/", "/big.bin", "/empty", "/fifo", "/link", "/sub", "/sub/small.txt"]);
    for (const r of entries) {
      const e = expected.get(r.pathname)!;
      expect(r.error, r.pathname).toBe("");
      expect(r.fileInfo.mode, r.pathname).toBe(e.mode);
      expect(Number(r.fileInfo.size), r.pathname).toBe(e.size);
      expect(BigInt(r.fileInfo.mod_time.seconds) * 1_000_000_000n + BigInt(r.fileInfo.mod_time.nanos), r.pathname).toBe(e.mtimeNs);
      expect(r.target, r.pathname).toBe(e.target);
      expect(r.hasReader, r.pathname).toBe(["/big.bin", "/empty", "/sub/small.txt"].includes(r.pathname));
    }
    expect(entries.find((r) => r.pathname === "/sub")!.fileInfo.name).toBe("sub");
    expect(entries.find((r) => r.pathname === "/sub/small.txt")!.fileInfo.mod_time).toEqual({ seconds: "1600000000", nanos: 500_000_000 });

    const bigChunks = contents.get("/big.bin")!;
    expect(bigChunks.length).toBeGreaterThanOrEqual(4);
    for (const c of bigChunks) expect(c.byteLength).toBeLessThanOrEqual(MiB);
    expect(Buffer.concat(bigChunks).equals(big)).toBe(true);
    expect(Buffer.concat(contents.get("/sub/small.txt")!).toString()).toBe("hello plugin\n");

    if (withXattr) {
      const i = records.findIndex((r) => r.pathname === "/sub/small.txt" && !r.isXattr);
      expect(records[i].extendedAttributes).toEqual(["user.coffer"]);
      expect(records[i + 1]).toMatchObject({ pathname: "/sub/small.txt", isXattr: true, xattrName: "user.coffer", xattrType: 1, hasReader: true });
      expect(Buffer.concat(contents.get("/sub/small.txt#user.coffer")!).toString()).toBe("hello");
    }

    // Released: by the Result after Open, and by the Result alone.
    for (const pathname of ["/sub/small.txt", "/empty"]) {
      const r = entries.find((x) => x.pathname === pathname);
      const err = await failure(openContent(p.client, r));
      expect(err.code, pathname).toBe(grpc.status.NOT_FOUND);
    }
    expect((await failure(openContent(p.client, record("/nope", null)))).code).toBe(grpc.status.NOT_FOUND);

    await call(p.client, "Close");
    expect(await p.stop()).toBe(0);
  });

  it("refuses a bad parameter at Init with INVALID_ARGUMENT naming it, and calls before Init with FAILED_PRECONDITION", async () => {
    const p = await startPlugin(PLUGFS("importer"), ImporterClient);
    expect((await failure(call(p.client, "Ping"))).code).toBe(grpc.status.FAILED_PRECONDITION);
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    const imp = (p.client as any).Import() as grpc.ClientDuplexStream<Msg, Msg>;
    const impErr = await new Promise<grpc.ServiceError>((resolve) => {
      imp.on("error", resolve);
      imp.on("data", () => {});
    });
    expect(impErr.code).toBe(grpc.status.FAILED_PRECONDITION);

    const bad = await failure(call(p.client, "Init", { options: initOptions(tmp), proto: "plugfs", config: { location: `plugfs:${tmp}`, one_file_system: "maybe" } }));
    expect(bad.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(bad.details).toContain("one_file_system");
    const unknown = await failure(call(p.client, "Init", { options: initOptions(tmp), proto: "plugfs", config: { location: `plugfs:${tmp}`, bogus: "1" } }));
    expect(unknown.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(unknown.details).toContain("bogus");
    const noLocation = await failure(call(p.client, "Init", { options: initOptions(tmp), proto: "plugfs", config: {} }));
    expect(noLocation.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(noLocation.details).toContain("location");

    // A good Init still works after refused ones; a second one is refused.
    const ok = await call(p.client, "Init", { options: initOptions(tmp), proto: "plugfs", config: { location: "sub-dir", one_file_system: "true" } });
    expect(ok.root).toBe(path.join(tmp, "sub-dir"));
    expect((await failure(call(p.client, "Init", { options: initOptions(tmp), proto: "plugfs", config: { location: tmp } }))).code).toBe(grpc.status.FAILED_PRECONDITION);
    // No Close: the end of the connection alone ends the process.
    expect(await p.stop()).toBe(0);
  });

  it("refuses command-line arguments like the Go SDK", async () => {
    const child = spawn(process.execPath, [PLUGFS("importer"), "--oops"], { stdio: ["pipe", "pipe", "pipe"] });
    let err = "";
    let out = "";
    child.stderr.on("data", (d: Buffer) => (err += d.toString()));
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.on("exit", resolve));
    expect(code).toBe(1);
    expect(err).toContain("usage");
    expect(out).toBe("");
  });
});

describe("plugfs exporter plugin", () => {
  it("writes the records it is sent (content chunked, ended by an empty chunk), one Result per record in order, per-record failures as Result errors", async () => {
    const dst = path.join(tmp, "restored");
    const p = await startPlugin(PLUGFS("exporter"), ExporterClient);
    const init = await call(p.client, "Init", { options: initOptions(tmp), proto: "plugfs", config: { location: `plugfs:${dst}` } });
    expect(init).toMatchObject({ type: "plugfs", root: dst, flags: 1 | 32 });

    const probe = path.join(tmp, "xattr-probe");
    await fsp.writeFile(probe, "");
    const withXattr = xattrsWork(probe);
    const content = randomBytes(2 * MiB + 777);
    const t = (s: number) => BigInt(s) * 1_000_000_000n + 250_000_000n;
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    const exp = (p.client as any).Export() as grpc.ClientDuplexStream<Msg, Msg>;
    const results: Msg[] = [];
    const done = new Promise<void>((resolve, reject) => {
      exp.on("data", (m: Msg) => results.push(m.result));
      exp.on("error", reject);
      exp.on("end", resolve);
    });
    const sent: string[] = [];
    const write = (m: Msg) => exp.write(m);
    const rec = (r: Msg) => {
      sent.push(r.isXattr ? `${r.pathname}#${r.xattrName}` : r.pathname);
      write({ record: r });
    };
    rec(record("/", fileInfo("restored", GO_DIR + 0o755, 0, t(1_500_000_000))));
    rec(record("/d", fileInfo("d", GO_DIR + 0o750, 0, t(1_500_000_100))));
    if (withXattr) {
      rec(record("/d/f.bin", fileInfo("user.coffer", 0, 5, 0n), { isXattr: true, xattrName: "user.coffer", xattrType: 1, hasReader: true }));
      write({ chunk: Buffer.from("hel") });
      write({ chunk: Buffer.from("lo") });
      write({ chunk: Buffer.alloc(0) });
    }
    rec(record("/d/f.bin", fileInfo("f.bin", 0o640, content.byteLength, t(1_500_000_200)), { hasReader: true, extendedAttributes: withXattr ? ["user.coffer"] : [] }));
    for (let off = 0; off < content.byteLength; off += MiB) write({ chunk: content.subarray(off, off + MiB) });
    write({ chunk: Buffer.alloc(0) });
    // Attributes after their file (coffer's host order): the file waits for them, its content spooled (beyond memory: 9 MiB).
    const large = randomBytes(9 * MiB + 5);
    rec(record("/d/late.bin", fileInfo("late.bin", 0o604, large.byteLength, t(1_500_000_250)), { hasReader: true, extendedAttributes: withXattr ? ["user.a", "user.b"] : [] }));
    for (let off = 0; off < large.byteLength; off += MiB) write({ chunk: large.subarray(off, off + MiB) });
    write({ chunk: Buffer.alloc(0) });
    if (withXattr) {
      for (const [name, value] of [["user.a", "A"], ["user.b", "BB"]]) {
        rec(record("/d/late.bin", fileInfo(name!, 0, value!.length, 0n), { isXattr: true, xattrName: name, xattrType: 1, hasReader: true }));
        write({ chunk: Buffer.from(value!) });
        write({ chunk: Buffer.alloc(0) });
      }
    }
    rec(record("/empty", fileInfo("empty", 0o600, 0, t(1_500_000_300)), { hasReader: true }));
    write({ chunk: Buffer.alloc(0) });
    rec(record("/d/../escape", fileInfo("escape", 0o644, 3, t(1_500_000_400)), { hasReader: true }));
    write({ chunk: Buffer.from("bad") });
    write({ chunk: Buffer.alloc(0) });
    rec(record("/link", fileInfo("link", GO_SYMLINK + 0o777, 9, t(1_500_000_500)), { target: "d/f.bin" }));
    exp.end();
    await done;

    expect(results.map((r) => (r.header.isXattr ? `${r.header.pathname}#${r.header.xattrName}` : r.header.pathname))).toEqual(sent);
    for (const r of results) {
      if (r.header.pathname === "/d/../escape") expect(r.error).not.toBe("");
      else expect(r.error, r.header.pathname).toBe("");
    }
    expect((await fsp.readFile(path.join(dst, "d", "f.bin"))).equals(content)).toBe(true);
    expect((await fsp.stat(path.join(dst, "d", "f.bin"))).mode & 0o7777).toBe(0o640);
    expect((await fsp.stat(path.join(dst, "d", "f.bin"), { bigint: true })).mtimeNs / 1000n).toBe(t(1_500_000_200) / 1000n);
    expect((await fsp.stat(path.join(dst, "d"), { bigint: true })).mtimeNs / 1_000_000_000n).toBe(1_500_000_100n);
    expect((await fsp.stat(path.join(dst, "d"))).mode & 0o7777).toBe(0o750);
    expect(await fsp.readFile(path.join(dst, "empty"), "utf8")).toBe("");
    expect(await fsp.readlink(path.join(dst, "link"))).toBe("d/f.bin");
    expect(existsSync(path.join(tmp, "escape"))).toBe(false);
    expect((await fsp.readFile(path.join(dst, "d", "late.bin"))).equals(large)).toBe(true);
    expect((await fsp.stat(path.join(dst, "d", "late.bin"))).mode & 0o7777).toBe(0o604);
    if (withXattr) {
      const xattr = (file: string, name: string) => xattrSyscalls().get(Buffer.from(path.join(dst, file)), Buffer.from(name)).toString();
      expect(xattr("d/f.bin", "user.coffer")).toBe("hello");
      expect(xattr("d/late.bin", "user.a")).toBe("A");
      expect(xattr("d/late.bin", "user.b")).toBe("BB");
    }
    const spools = (await fsp.readdir(tmpdir())).filter((n) => n.startsWith("coffer-plugin-spool-"));
    expect(spools).toEqual([]);

    await call(p.client, "Close");
    expect(await p.stop()).toBe(0);
  });
});

describe("plugfs storage plugin", () => {
  it("maps every Store rpc: Create/Open/Put (several messages)/Get (ranges)/List/Delete/Mode/Size, with error statuses", async () => {
    const repo = path.join(tmp, "repo");
    const p = await startPlugin(PLUGFS("storage"), StoreClient);
    expect((await failure(call(p.client, "Open"))).code).toBe(grpc.status.FAILED_PRECONDITION);
    const init = await call(p.client, "Init", { proto: "plugfs", config: { location: `plugfs:///${repo.slice(1)}` } });
    expect(init).toMatchObject({ type: "plugfs", root: repo, flags: 1 });

    const none = await failure(call(p.client, "Open"));
    expect(none.code).toBe(grpc.status.NOT_FOUND);
    expect(none.details).toContain("no repository");
    await call(p.client, "Create", { config: Buffer.from("config-blob") });
    expect((await failure(call(p.client, "Create", { config: Buffer.from("again") }))).code).toBe(grpc.status.ALREADY_EXISTS);
    expect((await call(p.client, "Open")).config.toString()).toBe("config-blob");
    await call(p.client, "Ping");
    expect((await call(p.client, "Mode")).mode).toBe(2 | 4);

    const mac = randomBytes(32);
    const data = randomBytes(2 * MiB + 4321);
    const written = await new Promise<Msg>((resolve, reject) => {
      // eslint-disable-next-line @typescript-eslint/no-explicit-any
      const put = (p.client as any).Put((err: grpc.ServiceError | null, res: Msg) => (err ? reject(err) : resolve(res)));
      put.write({ mac, type: 1, chunk: Buffer.alloc(0), flags: 0 });
      for (let off = 0; off < data.byteLength; off += MiB) put.write({ chunk: data.subarray(off, off + MiB) });
      put.end();
    });
    expect(Number(written.bytes_written)).toBe(data.byteLength);

    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    const get = (req: Msg) => readAll((p.client as any).Get(req)).then((cs) => cs.map((c: Msg) => c.chunk as Buffer));
    const whole = await get({ mac, type: 1 });
    for (const c of whole) expect(c.byteLength).toBeLessThanOrEqual(MiB);
    expect(Buffer.concat(whole).equals(data)).toBe(true);
    expect(Buffer.concat(await get({ mac, type: 1, range: { offset: "1048570", length: 100 } })).equals(data.subarray(1048570, 1048670))).toBe(true);
    expect((await failure(get({ mac: randomBytes(32), type: 1 }))).code).toBe(grpc.status.NOT_FOUND);
    expect((await failure(get({ mac, type: 2 }))).code).toBe(grpc.status.NOT_FOUND);

    const listed = await call(p.client, "List", { type: 1 });
    expect(listed.macs.map((m: Buffer) => m.toString("hex"))).toEqual([mac.toString("hex")]);
    expect((await call(p.client, "List", { type: 2 })).macs).toEqual([]);
    expect(Number((await call(p.client, "Size")).size)).toBeGreaterThanOrEqual(data.byteLength);

    await call(p.client, "Delete", { mac, type: 1 });
    expect((await failure(get({ mac, type: 1 }))).code).toBe(grpc.status.NOT_FOUND);
    expect((await failure(call(p.client, "Delete", { mac, type: 1 }))).code).toBe(grpc.status.NOT_FOUND);
    expect((await failure(call(p.client, "List", { type: 4 }))).code).toBe(grpc.status.UNIMPLEMENTED);

    // Many calls, some at once: no listener piles up on the plugin's side.
    await Promise.all(Array.from({ length: 40 }, () => call(p.client, "Ping")));
    for (let i = 0; i < 20; i++) await call(p.client, "Mode");

    await call(p.client, "Close");
    expect((await failure(call(p.client, "Ping"))).code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(await p.stop()).toBe(0);
    expect(p.stderr()).not.toMatch(/MaxListeners|memory leak/);

    // read_only: writes refused with PERMISSION_DENIED.
    const ro = await startPlugin(PLUGFS("storage"), StoreClient);
    await call(ro.client, "Init", { proto: "plugfs", config: { location: repo, read_only: "true" } });
    expect((await call(ro.client, "Mode")).mode).toBe(4);
    expect((await failure(call(ro.client, "Delete", { mac, type: 1 }))).code).toBe(grpc.status.PERMISSION_DENIED);
    expect(await ro.stop()).toBe(0);
  });
});

describe("a plugin that prints", () => {
  it("keeps the wire clean: console output and process.stdout.write go to stderr; NEEDACK results reach the connector", async () => {
    const fixture = path.join(tmp, "noisy-importer.mjs");
    const sdk = pathToFileURL(path.join(DIST, "sdk", "index.js")).href;
    await fsp.writeFile(
      fixture,
      `
import { entrypointImporter, protectStdout, LocationFlag } from ${JSON.stringify(sdk)};
protectStdout();
console.log("top-level log");
let acks;
const info = (name, kind, size) => ({ name, kind, size, mode: kind === "dir" ? 0o755 : 0o644, mtimeNs: 0n, dev: 0n, ino: 0n, uid: 0, gid: 0, nlink: 1 });
await entrypointImporter(process.argv.slice(2), {
  async make(proto, config, opts) {
    console.log("make", proto, config.location);
    console.info("info during init");
    process.stdout.write("raw stdout write during init\\n");
    return {
      origin: "noisy", type: proto, root: "/", flags: LocationFlag.NEEDACK,
      async ping() { console.log("ping"); },
      async *import({ results }) {
        acks = (async () => { for await (const r of results) console.log("ack", r.record.pathname, r.error ?? "ok"); })();
        console.log("import starts");
        yield { pathname: "/", fileInfo: info("/", "dir", 0) };
        for (const name of ["a", "b"]) {
          console.warn("yielding", name);
          process.stdout.write("raw " + name + "\\n");
          const body = Buffer.from("content of " + name);
          yield { pathname: "/" + name, fileInfo: info(name, "file", body.length), open: async () => [body] };
        }
      },
      async close() {
        await acks;
        console.log("all acked");
        console.log("closing");
      },
    };
  },
});
`,
    );
    const p = await startPlugin(fixture, ImporterClient);
    const init = await call(p.client, "Init", { options: initOptions(tmp), proto: "noisy", config: { location: "noisy:x" } });
    expect(init).toMatchObject({ origin: "noisy", type: "noisy", root: "/", flags: 8 });
    await call(p.client, "Ping");

    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    const imp = (p.client as any).Import() as grpc.ClientDuplexStream<Msg, Msg>;
    const got: string[] = [];
    const ended = new Promise<void>((resolve, reject) => {
      imp.on("error", reject);
      imp.on("end", resolve);
    });
    const work: Promise<void>[] = [];
    imp.on("data", (m: Msg) => {
      if (m.finished) {
        void Promise.all(work).then(() => imp.end());
        return;
      }
      const r = m.record;
      work.push(
        (async () => {
          const body = r.hasReader ? Buffer.concat(await openContent(p.client, r)).toString() : "";
          got.push(`${r.pathname}=${body}`);
          imp.write({ result: { header: r, error: r.pathname === "/b" ? "refused by host" : "" } });
        })(),
      );
    });
    await ended;
    expect(got.sort()).toEqual(["/=", "/a=content of a", "/b=content of b"]);
    await call(p.client, "Close");
    expect(await p.stop()).toBe(0);
    const err = p.stderr();
    for (const line of ["top-level log", "make noisy noisy:x", "info during init", "raw stdout write during init", "ping", "import starts", "yielding a", "raw b", "ack / ok", "ack /a ok", "ack /b refused by host", "all acked", "closing"]) {
      expect(err).toContain(line);
    }
  });
  it("ends when the connection drops in the middle of an Import, closing the connector first", async () => {
    const p = await startPlugin(path.join(tmp, "noisy-importer.mjs"), ImporterClient);
    await call(p.client, "Init", { options: initOptions(tmp), proto: "noisy", config: {} });
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    const imp = (p.client as any).Import() as grpc.ClientDuplexStream<Msg, Msg>;
    imp.on("error", () => {});
    await new Promise<void>((resolve) => imp.once("data", () => resolve()));
    p.drop();
    expect(await p.exited).toBe(0);
    await p.stop();
    expect(p.stderr()).toContain("closing");
  });
});
