/**
 * The plugin host through the real process boundary: PluginImporter,
 * PluginExporter and PluginStore driving test plugins written directly on
 * @grpc/grpc-js + @grpc/proto-loader from proto/*.proto (never through
 * coffer's SDK or wire.ts), so the wire, not shared code, is the contract.
 * Then the faults: each gives a CofferError naming the plugin and what it
 * did, and leaves no plugin process behind.
 */
import { createHash, randomBytes } from "node:crypto";
import { promises as fsp } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { LocationFlag, Resource, StoreMode } from "../../src/connectors/flags.js";
import { PluginExporter } from "../../src/connectors/plugin/exporter.js";
import { PluginImporter } from "../../src/connectors/plugin/importer.js";
import { startPlugin } from "../../src/connectors/plugin/process.js";
import { PluginStore } from "../../src/connectors/plugin/store.js";
import type { ConnectorOptions, ContentPiece, ExportRecord, FileInfo, ImportRecord, ImportResult } from "../../src/connectors/records.js";
import { Channel } from "../../src/util/channel.js";
import { CofferError, NotFoundError } from "../../src/util/errors.js";
// The fixture's own description of its tree (plain JS, no coffer code).
import { MTIME_NS, TREE } from "../fixtures/plugins/raw-importer.mjs";

const FIXTURES = fileURLToPath(new URL("../fixtures/plugins/", import.meta.url));
const MiB = 1 << 20;

interface Closable {
  close(): Promise<void>;
  readonly pid: number | undefined;
}

const opened: Closable[] = [];
const stderr: string[] = [];
let base: string;

beforeAll(async () => {
  base = await fsp.mkdtemp(join(tmpdir(), "coffer-plugin-host-"));
});
afterAll(async () => {
  await fsp.rm(base, { recursive: true, force: true });
});
afterEach(async () => {
  for (const c of opened.splice(0)) await c.close();
});

function options(warnings: string[] = []): ConnectorOptions {
  return { hostname: "testhost", os: "linux", arch: "x64", cwd: "/", maxConcurrency: 4, excludes: [], noXattr: false, onWarning: (w) => warnings.push(w) };
}

function spec(name: string, file: string, args: string[] = [], timeoutMs?: number) {
  return { name, executable: join(FIXTURES, file), args, timeoutMs, onStderr: (line: string) => stderr.push(`[${name}] ${line}`) };
}

function keep<T extends Closable>(c: T): T {
  opened.push(c);
  return c;
}

function alive(pid: number | undefined): boolean {
  if (pid === undefined) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function dirOf(name: string): Promise<string> {
  return fsp.mkdtemp(join(base, `${name}-`));
}

/** The rejection of `p` (fails if it resolves). */
async function rejection(p: Promise<unknown>): Promise<CofferError> {
  const e = await p.then(
    () => expect.unreachable("expected a rejection"),
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(CofferError);
  return e as CofferError;
}

async function collect(it: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Uint8Array[] = [];
  for await (const p of it) parts.push(p);
  return Buffer.concat(parts);
}

/** Imports as the core does: workers pulling records, reading content, then answering each on `results`. */
async function importAll(imp: PluginImporter, o: { signal?: AbortSignal; workers?: number } = {}) {
  const results = new Channel<ImportResult>();
  const seen = new Map<string, { record: ImportRecord; content?: Buffer }>();
  /** Extended attributes sent as records of their own: "PATH NAME" -> value. */
  const xattrs = new Map<string, Buffer>();
  const it = imp.import({ signal: o.signal, results })[Symbol.asyncIterator]();
  const worker = async () => {
    while (true) {
      const n = await it.next();
      if (n.done) return;
      const r = n.value;
      const s: { record: ImportRecord; content?: Buffer } = { record: r };
      if (r.xattrName !== undefined) xattrs.set(`${r.pathname} ${r.xattrName}`, r.open ? await collect(await r.open()) : Buffer.alloc(0));
      else seen.set(r.pathname, s);
      if (r.open && r.xattrName === undefined) s.content = await collect(await r.open());
      results.push(r.error !== undefined ? { record: r, error: r.error } : { record: r });
    }
  };
  try {
    await Promise.all(Array.from({ length: o.workers ?? 4 }, worker));
  } finally {
    results.end();
  }
  return Object.assign(seen, { xattrs });
}

describe("importer plugin (raw-importer)", () => {
  it("imports the whole tree with content, kinds, modes, mtimes and errors; answers every record; then exits", async () => {
    const log = join(await dirOf("import"), "results.jsonl");
    const warnings: string[] = [];
    const imp = keep(await PluginImporter.start(spec("raw-importer", "raw-importer.mjs"), "raw", { results_log: log, root: "/the/root" }, options(warnings)));
    expect([imp.origin, imp.type, imp.root, imp.flags]).toEqual(["raw-host", "raw", "/the/root", 0]);
    await imp.ping();

    const seen = await importAll(imp);
    const entries = TREE.filter((e) => !e.xattr);
    expect([...seen.keys()].sort()).toEqual(entries.map((e) => e.pathname).sort());
    const kinds = Object.fromEntries([...seen].map(([p, s]) => [p, s.record.fileInfo.kind]));
    expect(kinds).toEqual({
      "/": "dir",
      "/dir": "dir",
      "/dir/hello.txt": "file",
      "/dir/empty": "file",
      "/dir/sub": "dir",
      "/dir/sub/three-mib.bin": "file",
      "/exactly-one-mib": "file",
      "/setuid": "file",
      "/link": "symlink",
      "/fifo": "fifo",
      "/unreadable": "file",
    });
    for (const e of entries) {
      const s = seen.get(e.pathname)!;
      const r = s.record;
      if (e.error) {
        expect(r.error).toBe(e.error);
        continue;
      }
      expect(r.error).toBeUndefined();
      expect(r.fileInfo.mtimeNs).toBe(MTIME_NS);
      expect(r.fileInfo.mode).toBe(e.pathname === "/setuid" ? 0o4755 : (e.mode ?? 0) & 0o777);
      if (e.data) {
        expect(r.fileInfo.size).toBe(e.data.length);
        expect(s.content?.equals(e.data), e.pathname).toBe(true);
      } else expect(r.open).toBeUndefined();
      if (e.target) expect(r.target).toBe(e.target);
    }
    expect(seen.get("/dir/sub/three-mib.bin")!.content!.length).toBe(3 * MiB + 17);
    // The extended attribute came as a record of its own, with its value as content.
    expect(warnings).toEqual([]);
    expect([...seen.xattrs].map(([k, v]) => [k, v.toString()])).toEqual([["/dir/hello.txt user.comment", "a comment"]]);

    const pid = imp.pid;
    await imp.close();
    expect(alive(pid)).toBe(false);
    await imp.close(); // twice is fine

    // Every record (the xattr one included) answered once, the error record with its error, then the host half-closed.
    const lines = (await fsp.readFile(log, "utf8"))
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { pathname?: string; isXattr?: boolean; error?: string; end?: boolean });
    expect(lines.at(-1)).toEqual({ end: true });
    const answers = lines.slice(0, -1);
    expect(answers.map((a) => `${a.pathname}${a.isXattr ? " (xattr)" : ""}`).sort()).toEqual(TREE.map((e) => `${e.pathname}${e.xattr ? " (xattr)" : ""}`).sort());
    expect(answers.filter((a) => a.error).map((a) => [a.pathname, a.error])).toEqual([["/unreadable", "open /unreadable: permission denied"]]);
  });

  it("answers withheld until the iteration ended (NEEDACK) still reach the plugin; a second import yields the same", async () => {
    const log = join(await dirOf("needack"), "results.jsonl");
    const imp = keep(await PluginImporter.start(spec("raw-importer", "raw-importer.mjs"), "raw", { results_log: log, needack: "true" }, options()));
    expect(imp.flags).toBe(LocationFlag.NEEDACK);
    const results = new Channel<ImportResult>();
    const held: ImportResult[] = [];
    for await (const r of imp.import({ results })) {
      if (r.open) await collect(await r.open());
      held.push({ record: r });
    }
    for (const h of held) results.push(h);
    results.end();
    const again = await importAll(imp);
    expect(again.size + again.xattrs.size).toBe(held.length);
    await imp.close();
    const lines = (await fsp.readFile(log, "utf8")).trim().split("\n");
    expect(lines.filter((l) => l === '{"end":true}')).toHaveLength(2);
    expect(lines).toHaveLength(2 * (TREE.length + 1));
  });

  it("an abort mid-import rejects with INTERRUPTED; close() still ends the plugin", async () => {
    const imp = keep(await PluginImporter.start(spec("raw-importer", "raw-importer.mjs"), "raw", {}, options()));
    const ac = new AbortController();
    const it = imp.import({ signal: ac.signal, results: new Channel<ImportResult>() })[Symbol.asyncIterator]();
    expect((await it.next()).done).toBe(false);
    ac.abort();
    const e = await rejection(it.next());
    expect(e.code).toBe("INTERRUPTED");
    const pid = imp.pid;
    await imp.close();
    expect(alive(pid)).toBe(false);
  });
});

describe("exporter plugin (raw-exporter)", () => {
  const info = (pathname: string, kind: FileInfo["kind"], mode: number, size = 0, i = 0): FileInfo => ({
    name: pathname.slice(pathname.lastIndexOf("/") + 1),
    kind,
    size,
    mode,
    mtimeNs: 1_650_000_000_000_000_000n + BigInt(i) * 1_000_000_000n + 250_000_000n,
    dev: 1n,
    ino: BigInt(100 + i),
    uid: 0,
    gid: 0,
    nlink: 1,
  });
  async function* pieces(ps: ContentPiece[]): AsyncGenerator<ContentPiece> {
    for (const p of ps) yield p;
  }

  it("writes what it is sent: dirs, files (multi-chunk, zero pieces), symlinks, xattrs; per-record errors keep the stream going", async () => {
    const root = await dirOf("export");
    const target = join(root, "target");
    const xattrLog = join(root, "xattrs.jsonl");
    const exp = keep(await PluginExporter.start(spec("raw-exporter", "raw-exporter.mjs"), "raw", { dir: target, xattr_log: xattrLog }, options()));
    expect(exp.flags).toBe(LocationFlag.EXPORTXATTR);
    await exp.ping();

    const big = randomBytes(3 * MiB + 100);
    big.fill(0, MiB, 2 * MiB + 7);
    const small = Buffer.from("small file\n");
    const recs: ExportRecord[] = [
      { pathname: "/", fileInfo: info("/", "dir", 0o755, 0, 0) },
      { pathname: "/d", fileInfo: info("/d", "dir", 0o750, 0, 1) },
      { pathname: "/d/small.txt", fileInfo: info("/d/small.txt", "file", 0o640, small.length, 2), content: () => pieces([{ offset: 0, length: small.length, data: small }]), xattrs: [{ name: "user.k", value: new Uint8Array([1, 2, 255]) }] },
      {
        pathname: "/big.bin",
        fileInfo: info("/big.bin", "file", 0o600, big.length, 3),
        content: () =>
          pieces([
            { offset: 0, length: MiB, data: big.subarray(0, MiB) },
            { offset: MiB, length: MiB + 7, zero: true },
            { offset: 2 * MiB + 7, length: big.length - 2 * MiB - 7, data: big.subarray(2 * MiB + 7) },
          ]),
      },
      { pathname: "/empty", fileInfo: info("/empty", "file", 0o644, 0, 4) },
      { pathname: "/link", fileInfo: info("/link", "symlink", 0o777, 11, 5), target: "d/small.txt" },
    ];
    for (const r of recs.slice(0, 2)) expect(await exp.export(r)).toEqual({ pathname: r.pathname });
    // Files concurrently, as the core does: sends are serialised on the one stream.
    const results = await Promise.all(recs.slice(2).map((r) => exp.export(r)));
    expect(results).toEqual(recs.slice(2).map((r) => ({ pathname: r.pathname })));

    const fifo = await exp.export({ pathname: "/fifo", fileInfo: info("/fifo", "fifo", 0o644, 0, 6) });
    expect(fifo.error).toMatch(/not supported/);
    const unsafe = await exp.export({ pathname: "/d/../../escape", fileInfo: info("/escape", "file", 0o644, 0, 7) });
    expect(unsafe.error).toMatch(/normalised/);
    const broken = await exp.export({
      pathname: "/broken",
      fileInfo: info("/broken", "file", 0o644, 10, 8),
      content: async function* () {
        yield { offset: 0, length: 5, data: Buffer.from("12345") };
        throw new Error("the repository failed");
      },
    });
    expect(broken.error).toMatch(/the repository failed/);
    expect(await exp.export({ pathname: "/after", fileInfo: info("/after", "file", 0o644, 3, 9), content: () => pieces([{ offset: 0, length: 3, data: Buffer.from("abc") }]) })).toEqual({ pathname: "/after" });

    await exp.finish();
    const pid = exp.pid;
    await exp.close();
    expect(alive(pid)).toBe(false);

    expect((await fsp.readFile(join(target, "d/small.txt"))).equals(small)).toBe(true);
    expect((await fsp.readFile(join(target, "big.bin"))).equals(big)).toBe(true);
    expect((await fsp.readFile(join(target, "empty"))).length).toBe(0);
    expect(await fsp.readFile(join(target, "after"), "utf8")).toBe("abc");
    expect(await fsp.readlink(join(target, "link"))).toBe("d/small.txt");
    const st = await fsp.stat(join(target, "d"), { bigint: true });
    expect(Number(st.mode & 0o777n)).toBe(0o750);
    expect(st.mtimeNs / 1_000_000n).toBe(recs[1]!.fileInfo.mtimeNs / 1_000_000n);
    const fst = await fsp.stat(join(target, "big.bin"), { bigint: true });
    expect(Number(fst.mode & 0o777n)).toBe(0o600);
    expect(fst.mtimeNs / 1_000_000n).toBe(recs[3]!.fileInfo.mtimeNs / 1_000_000n);
    await expect(fsp.lstat(join(root, "escape"))).rejects.toThrow();
    expect((await fsp.readFile(xattrLog, "utf8")).trim().split("\n").map((l) => JSON.parse(l) as unknown)).toEqual([{ pathname: "/d/small.txt", name: "user.k", hex: "0102ff" }]);
  });

  it("an abort: queued exports reject with INTERRUPTED and send nothing; close() ends the plugin", async () => {
    const target = join(await dirOf("export-abort"), "t");
    const exp = keep(await PluginExporter.start(spec("raw-exporter", "raw-exporter.mjs"), "raw", { dir: target }, options()));
    const ac = new AbortController();
    let pulled = 0;
    const slow = exp.export(
      {
        pathname: "/slow",
        fileInfo: info("/slow", "file", 0o644, 4 * MiB, 1),
        content: async function* () {
          for (let i = 0; i < 4; i++) {
            pulled++;
            if (i === 1) ac.abort();
            yield { offset: i * MiB, length: MiB, data: new Uint8Array(MiB) };
          }
        },
      },
      { signal: ac.signal },
    );
    const queued = exp.export({ pathname: "/queued", fileInfo: info("/queued", "file", 0o644, 1, 2), content: () => pieces([{ offset: 0, length: 1, data: new Uint8Array(1) }]) }, { signal: ac.signal });
    expect((await rejection(slow)).code).toBe("INTERRUPTED");
    expect((await rejection(queued)).code).toBe("INTERRUPTED");
    expect(pulled).toBe(2);
    const pid = exp.pid;
    await exp.close();
    expect(alive(pid)).toBe(false);
    await expect(fsp.lstat(join(target, "queued"))).rejects.toThrow();
  });
});

describe("store plugin (raw-store)", () => {
  const mac = () => new Uint8Array(randomBytes(32));

  it("round trips: create/open, put/get (ranges), list, delete, size, mode, and the contract's errors", async () => {
    const dir = await dirOf("store");
    const store = keep(await PluginStore.start(spec("raw-store", "raw-store.mjs"), "raw", { dir }, options()));
    expect([store.origin, store.type, store.root, store.flags]).toEqual(["raw-host", "raw", dir, 0]);
    expect((await rejection(store.open())).code).toBe("NO_REPOSITORY");
    await store.create(new Uint8Array([1, 2, 3]));
    expect((await rejection(store.create(new Uint8Array([4])))).code).toBe("REPOSITORY_EXISTS");
    expect(await store.open()).toEqual(new Uint8Array([1, 2, 3]));
    await store.ping();
    expect(await store.mode()).toBe(StoreMode.READ | StoreMode.WRITE);

    const m1 = mac();
    const data = new Uint8Array(randomBytes(2 * MiB + 333));
    expect(await store.put(Resource.PACKFILE, m1, data)).toBe(data.length);
    expect(Buffer.from(await store.get(Resource.PACKFILE, m1)).equals(data)).toBe(true);
    const slice = await store.get(Resource.PACKFILE, m1, { offset: MiB - 10, length: MiB + 20 });
    expect(Buffer.from(slice).equals(data.subarray(MiB - 10, 2 * MiB + 10))).toBe(true);
    expect((await rejection(store.get(Resource.PACKFILE, m1, { offset: data.length - 1, length: 2 }))).code).toBe("CORRUPT");
    expect(await store.get(Resource.PACKFILE, m1, { offset: data.length, length: 0 })).toHaveLength(0);

    // A streamed put of pieces (reused buffer), and an empty object.
    const m2 = mac();
    const shared = new Uint8Array(700_000);
    const expected: Buffer[] = [];
    async function* reuse() {
      for (let i = 0; i < 5; i++) {
        shared.fill(i + 1);
        expected.push(Buffer.from(shared));
        yield shared;
      }
    }
    expect(await store.put(Resource.STATE, m2, reuse())).toBe(3_500_000);
    expect(Buffer.from(await store.get(Resource.STATE, m2)).equals(Buffer.concat(expected))).toBe(true);
    const m3 = mac();
    expect(await store.put(Resource.LOCK, m3, new Uint8Array(0))).toBe(0);
    expect(await store.get(Resource.LOCK, m3)).toHaveLength(0);

    const hex = (m: Uint8Array) => Buffer.from(m).toString("hex");
    const list = async (r: Resource) => {
      const out: string[] = [];
      for await (const m of store.list(r)) out.push(hex(m));
      return out.sort();
    };
    expect(await list(Resource.PACKFILE)).toEqual([hex(m1)]);
    expect(await list(Resource.STATE)).toEqual([hex(m2)]);
    expect(await store.size()).toBe(data.length + 3_500_000);

    const missing = mac();
    await expect(store.get(Resource.PACKFILE, missing)).rejects.toBeInstanceOf(NotFoundError);
    await expect(store.delete(Resource.PACKFILE, missing)).rejects.toBeInstanceOf(NotFoundError);
    await store.delete(Resource.PACKFILE, m1);
    await expect(store.get(Resource.PACKFILE, m1)).rejects.toBeInstanceOf(NotFoundError);

    // A source that throws: the put rejects with its error and leaves nothing.
    const boom = new Error("source failed");
    const m4 = mac();
    async function* failing() {
      yield new Uint8Array(100_000);
      throw boom;
    }
    await expect(store.put(Resource.PACKFILE, m4, failing())).rejects.toBe(boom);
    await expect(store.get(Resource.PACKFILE, m4)).rejects.toBeInstanceOf(NotFoundError);

    // Aborted: INTERRUPTED, nothing done.
    const ac = new AbortController();
    ac.abort();
    expect((await rejection(store.put(Resource.PACKFILE, m4, data, { signal: ac.signal }))).code).toBe("INTERRUPTED");
    expect((await rejection(store.get(Resource.STATE, m2, undefined, { signal: ac.signal }))).code).toBe("INTERRUPTED");
    expect((await rejection(store.size({ signal: ac.signal }))).code).toBe("INTERRUPTED");

    // Read-only: a second plugin process on the same directory.
    const ro = keep(await PluginStore.start(spec("raw-store", "raw-store.mjs"), "raw", { dir }, { ...options(), readOnly: true }));
    expect((await ro.mode()) & StoreMode.WRITE).toBe(0);
    expect(Buffer.from(await ro.get(Resource.STATE, m2)).equals(Buffer.concat(expected))).toBe(true);
    expect((await rejection(ro.put(Resource.PACKFILE, mac(), data))).code).toBe("READ_ONLY");
    expect((await rejection(ro.delete(Resource.STATE, m2))).code).toBe("READ_ONLY");
    expect((await rejection(ro.create(new Uint8Array(1)))).code).toBe("READ_ONLY");

    const pids = [store.pid, ro.pid];
    await store.close();
    await ro.close();
    expect(pids.map(alive)).toEqual([false, false]);
  });

  it("a 40 MiB object crosses the wire in 1 MiB messages both ways, intact (throughput: npm run bench:plugins)", async () => {
    const dir = await dirOf("store-big");
    const store = keep(await PluginStore.start(spec("raw-store", "raw-store.mjs"), "raw", { dir }, options()));
    const data = new Uint8Array(randomBytes(40 * MiB + 123));
    const m = mac();
    expect(await store.put(Resource.PACKFILE, m, data)).toBe(data.length);
    const got = await store.get(Resource.PACKFILE, m);
    expect(createHash("sha256").update(got).digest("hex")).toBe(createHash("sha256").update(data).digest("hex"));
    const part = await store.get(Resource.PACKFILE, m, { offset: 39 * MiB, length: MiB + 100 });
    expect(Buffer.from(part).equals(Buffer.from(data.subarray(39 * MiB, 40 * MiB + 100)))).toBe(true);
    await store.close();
    await fsp.rm(dir, { recursive: true, force: true });
  });
});

describe("faults", () => {
  const faulty = (mode: string, timeoutMs?: number) => spec("faulty", "faulty.mjs", [mode], timeoutMs);

  async function startFails(mode: string, timeoutMs?: number): Promise<CofferError> {
    const e = await rejection(PluginImporter.start(faulty(mode, timeoutMs), "faulty", {}, options()));
    expect(e.message).toMatch(/^plugin faulty: /);
    expect(e.data.plugin).toBe("faulty");
    expect(alive(e.data.pid as number)).toBe(false);
    return e;
  }

  it("the executable cannot be started", async () => {
    const e = await rejection(PluginImporter.start({ name: "ghost", executable: join(FIXTURES, "no-such-plugin") }, "x", {}, options()));
    expect(e.code).toBe("IO");
    expect(e.message).toMatch(/plugin ghost: cannot start .*no-such-plugin.*ENOENT/);
  });

  it("exits at start", async () => {
    const e = await startFails("exit-at-start");
    expect(e.code).toBe("IO");
    expect(e.message).toMatch(/connection broke during Init: the plugin exited with code 3.*giving up at once/);
    expect(stderr).toContain("[faulty] faulty: giving up at once");
  });

  it("writes garbage to its stdout", async () => {
    const e = await startFails("garbage");
    expect(e.code).toBe("IO");
    expect(e.message).toMatch(/wrote something other than gRPC \(HTTP\/2\) to its stdout.*Hello! I am a plugin/);
  });

  it("hangs past the deadline in Init", async () => {
    const e = await startFails("hang-init", 1000);
    expect(e.code).toBe("IO");
    expect(e.message).toMatch(/did not answer Init within 1000 ms/);
  });

  it("hangs past the deadline in Ping, and in Close", async () => {
    // The deadline covers Init too, which this plugin answers: long enough for a loaded machine to start it.
    const imp = keep(await PluginImporter.start(faulty("hang-ping", 5000), "faulty", {}, options()));
    const e = await rejection(imp.ping());
    expect(e.code).toBe("IO");
    expect(e.message).toMatch(/plugin faulty: did not answer Ping within 5000 ms/);
    const pid = imp.pid;
    expect(alive(pid)).toBe(true);
    await imp.close();
    expect(alive(pid)).toBe(false);
  });

  it("reports an unknown flag", async () => {
    const e = await startFails("unknown-flag");
    expect(e.code).toBe("UNSUPPORTED");
    expect(e.message).toMatch(/reports location flags 0x400 \(bit 10\) that this coffer does not know/);
  });

  async function importFails(mode: string): Promise<{ e: CofferError; seen: string[] }> {
    const imp = keep(await PluginImporter.start(faulty(mode), "faulty", {}, options()));
    const seen: string[] = [];
    const results = new Channel<ImportResult>();
    const run = async () => {
      for await (const r of imp.import({ results })) {
        seen.push(r.pathname);
        results.push({ record: r });
      }
    };
    const e = await rejection(run());
    results.end();
    expect(e.message).toMatch(/^plugin faulty: /);
    const pid = imp.pid;
    await imp.close();
    expect(alive(pid)).toBe(false);
    return { e, seen };
  }

  it("crashes mid-stream", async () => {
    const { e, seen } = await importFails("crash-import");
    expect(seen).toEqual(["/", "/a"]);
    expect(e.code).toBe("IO");
    expect(e.message).toMatch(/connection broke during Import: the plugin exited with code 7.*crashing mid-import/);
  });

  it("sends a malformed record", async () => {
    const { e, seen } = await importFails("malformed");
    expect(seen).toEqual(["/"]);
    expect(e.code).toBe("IO");
    expect(e.message).toMatch(/sent a malformed record \(pathname: .*not normalised.*\/dir\/\.\.\/etc\/passwd/);
  });

  it("sends a record without fileInfo", async () => {
    const { e } = await importFails("no-fileinfo");
    expect(e.code).toBe("IO");
    expect(e.message).toMatch(/sent a malformed record \(fileInfo: record has no fileInfo/);
  });

  it("sends an oversized message", async () => {
    const { e, seen } = await importFails("oversized");
    expect(seen).toEqual(["/"]);
    expect(e.code).toBe("IO");
    expect(e.message).toMatch(/sent a message larger than the wire's limit of 4194304 bytes during Import/);
  });

  it("fails its Import call after the last record: a warning, the records stand", async () => {
    const warnings: string[] = [];
    const imp = keep(await PluginImporter.start(faulty("late-error"), "faulty", {}, options(warnings)));
    const results = new Channel<ImportResult>();
    const seen: string[] = [];
    for await (const r of imp.import({ results })) {
      seen.push(r.pathname);
      results.push({ record: r });
    }
    results.end();
    expect(seen).toEqual(["/"]);
    const pid = imp.pid;
    await imp.close();
    expect(alive(pid)).toBe(false);
    expect(warnings).toEqual([expect.stringMatching(/^plugin faulty: Import failed: cleaning up failed \(INTERNAL\) \(after the last record\)$/)]);
  });

  it("crashes mid-Put", async () => {
    const store = keep(await PluginStore.start(faulty("crash-put"), "faulty", {}, options()));
    const e = await rejection(store.put(Resource.PACKFILE, new Uint8Array(32), new Uint8Array(3 * MiB)));
    expect(e.code).toBe("IO");
    expect(e.message).toMatch(/plugin faulty: the plugin connection broke during Put: the plugin exited with code 9/);
    // Later calls fail the same way, at once.
    const again = await rejection(store.ping());
    expect(again.message).toMatch(/connection broke during Ping: the plugin exited with code 9/);
    const pid = store.pid;
    await store.close();
    await store.close();
    expect(alive(pid)).toBe(false);
  });

  it("an AbortSignal given to startPlugin kills the process", async () => {
    const ac = new AbortController();
    const p = await startPlugin({ ...faulty("hang-init"), signal: ac.signal });
    expect(alive(p.pid)).toBe(true);
    ac.abort();
    expect((await p.exited).signal).toBe("SIGKILL");
    expect(alive(p.pid)).toBe(false);
    await p.close();
  });
});
