/**
 * Fuzzing what the plugin host decodes from a plugin (src/connectors/plugin/):
 * the response messages, through the name codec that turns their names from
 * bytes into strings (name-codec.ts), and the host's checks on them. Two layers:
 *
 * - In process, many cases: the host's deserializer of every response it
 *   receives, on messages encoded by an independent peer (proto-loader on
 *   proto/*.proto, as the test plugins do), mutated, or random. It either
 *   gives a message of the shape the host reads, or throws (grpc-js then
 *   ends the call with INTERNAL, which the host reports as IO). What
 *   decodes passes importRecordFromWire() to a well-formed record or a
 *   named problem, never a throw, and its names are ones the host sends
 *   back byte for byte in the record's result (the Go SDK finds the
 *   record's reader by them).
 * - Through a real plugin process (test/fixtures/plugins/replay.mjs, which
 *   sends the bytes it is given as its answers), fewer cases: an import,
 *   and a store's open, mode, size, list and get, end in records and bytes
 *   that satisfy the Store and Importer contracts, or in the error the host
 *   documents (docs/WIRE.md, "Errors and status codes"): a CofferError
 *   naming the plugin, IO (CORRUPT for a ranged get of the wrong length).
 */
import { promises as fsp } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import fc from "fast-check";
import { afterAll, describe, expect, it } from "vitest";
import { Resource } from "../../src/connectors/flags.js";
import { importRecordFromWire, PluginImporter } from "../../src/connectors/plugin/importer.js";
import { PluginStore } from "../../src/connectors/plugin/store.js";
import { protoDir, services, type WireRecord } from "../../src/connectors/plugin/wire.js";
import type { ConnectorOptions, ImportRecord } from "../../src/connectors/records.js";
import { CofferError } from "../../src/util/errors.js";
import { arbMutations, boundedAllocation, fuzzParams, mutateAll, type Outcome } from "../helpers/fuzz.js";

/** The peer: the wire's messages from the .proto files alone, names as plain strings. */
const peer = protoLoader.loadSync(["connectors.proto", "importer.proto", "exporter.proto", "storage.proto"], {
  keepCase: true,
  longs: String,
  enums: Number,
  bytes: Buffer,
  defaults: true,
  oneofs: true,
  includeDirs: [protoDir()],
}) as unknown as Record<string, Record<string, grpc.MethodDefinition<unknown, unknown>>>;
const host = services() as unknown as Record<"importer" | "exporter" | "store", Record<string, grpc.MethodDefinition<unknown, unknown>>>;

const GO_DIR = 2 ** 31;
const GO_SYMLINK = 2 ** 27;
const int64 = fc.oneof(fc.constantFrom("0", "-1", "9007199254740991", "9007199254740993", "-9223372036854775808", "9223372036854775807"), fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }).map(String));
const uint64 = fc.oneof(fc.constantFrom("0", "1", "18446744073709551615", "9007199254740993"), fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }).map(String));
const arbPathname = fc.oneof(
  fc.constantFrom("/", "/a", "/a/b", "a", "", "/a/", "//", "/./x", "/a/../b", "/a\0b", "/é", "/\udc80"),
  fc.array(fc.string({ maxLength: 6 }), { minLength: 1, maxLength: 3 }).map((p) => `/${p.join("/")}`),
);
const arbFileInfo = fc.record({
  name: fc.string({ maxLength: 8 }),
  size: int64,
  mode: fc.oneof(fc.constantFrom(0o644, GO_DIR + 0o755, GO_SYMLINK + 0o777, 0xffffffff), fc.nat({ max: 0xffffffff })),
  mod_time: fc.option(fc.record({ seconds: int64, nanos: fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }) })),
  dev: uint64,
  ino: uint64,
  uid: uint64,
  gid: uint64,
  nlink: fc.nat({ max: 0xffffffff }),
  username: fc.string({ maxLength: 6 }),
  groupname: fc.string({ maxLength: 6 }),
  flags: fc.nat({ max: 0xffffffff }),
});
const arbRecord = fc.record({
  hasReader: fc.boolean(),
  pathname: arbPathname,
  error: fc.oneof(fc.constant(""), fc.string({ maxLength: 8 })),
  isXattr: fc.oneof({ arbitrary: fc.constant(false), weight: 3 }, fc.constant(true)),
  xattrName: fc.oneof(fc.constant(""), fc.string({ maxLength: 6 })),
  xattrType: fc.constantFrom(0, 1, 2, 7),
  target: fc.oneof(fc.constant(""), fc.string({ maxLength: 8 })),
  fileInfo: fc.option(arbFileInfo),
  extendedAttributes: fc.array(fc.string({ maxLength: 6 }), { maxLength: 2 }),
  fileAttributes: fc.nat({ max: 0xffffffff }),
});

/** The responses the host receives, by service and method, with a peer message of each. */
const RESPONSES: { service: "importer" | "store"; method: string; peerService: string; arb: fc.Arbitrary<unknown> }[] = [
  { service: "importer", method: "Import", peerService: "importer.Importer", arb: fc.record({ record: fc.option(arbRecord), finished: fc.boolean() }) },
  { service: "importer", method: "Open", peerService: "importer.Importer", arb: fc.record({ chunk: fc.uint8Array({ maxLength: 64 }).map(Buffer.from) }) },
  { service: "importer", method: "Init", peerService: "importer.Importer", arb: fc.record({ origin: fc.string(), type: fc.string(), root: fc.string(), flags: fc.nat() }) },
  { service: "store", method: "Open", peerService: "store.Store", arb: fc.record({ config: fc.uint8Array({ maxLength: 64 }).map(Buffer.from) }) },
  { service: "store", method: "Mode", peerService: "store.Store", arb: fc.record({ mode: fc.integer() }) },
  { service: "store", method: "Size", peerService: "store.Store", arb: fc.record({ size: int64 }) },
  { service: "store", method: "List", peerService: "store.Store", arb: fc.record({ macs: fc.array(fc.uint8Array({ minLength: 30, maxLength: 34 }).map(Buffer.from), { maxLength: 4 }) }) },
  { service: "store", method: "Get", peerService: "store.Store", arb: fc.record({ chunk: fc.uint8Array({ maxLength: 64 }).map(Buffer.from) }) },
  { service: "store", method: "Put", peerService: "store.Store", arb: fc.record({ bytes_written: int64 }) },
];

/** The response bytes of one method: a peer's message, mutated, or random bytes. */
const arbResponse = fc.constantFrom(...RESPONSES).chain((r) =>
  fc.record({
    r: fc.constant(r),
    bytes: fc.oneof(
      r.arb.map((m) => new Uint8Array(peer[r.peerService]![r.method]!.responseSerialize(m))),
      fc.tuple(r.arb, arbMutations).map(([m, ms]) => mutateAll(peer[r.peerService]![r.method]!.responseSerialize(m), ms)),
      fc.uint8Array({ maxLength: 120 }),
    ),
  }),
);

/** A record from the host's checks holds a usable pathname and file info. */
function expectWellFormed(rec: Omit<ImportRecord, "open">): void {
  expect(rec.pathname.startsWith("/")).toBe(true);
  expect(rec.pathname.includes("\0")).toBe(false);
  if (rec.pathname !== "/") for (const c of rec.pathname.slice(1).split("/")) expect(["", ".", ".."]).not.toContain(c);
  const fi = rec.fileInfo;
  expect(Number.isSafeInteger(fi.size) && fi.size >= 0 && Number.isSafeInteger(fi.uid) && Number.isSafeInteger(fi.gid)).toBe(true);
  expect(typeof fi.mtimeNs === "bigint" && typeof fi.dev === "bigint" && typeof fi.ino === "bigint").toBe(true);
  if (fi.kind === "symlink" && rec.error === undefined) expect(typeof rec.target === "string" && rec.target !== "").toBe(true);
}

/** Checks what the host decoded from a response, as the host's code reads it. */
function expectReadable(method: string, service: string, msg: Record<string, unknown>): void {
  if (service === "importer" && method === "Import") {
    expect(typeof msg.finished).toBe("boolean");
    const w = msg.record as WireRecord | null;
    if (w === null) return;
    for (const s of [w.pathname, w.xattrName, w.target, w.error, ...w.extendedAttributes]) expect(typeof s).toBe("string");
    const checked = importRecordFromWire(w);
    if ("record" in checked) expectWellFormed(checked.record);
    else expect(typeof checked.field === "string" && typeof checked.problem === "string").toBe(true);
    // The record goes back as received, in its result: the same names, byte for byte.
    const m = host.importer.Import!;
    const echoed = m.requestDeserialize(m.requestSerialize({ result: { header: w, error: "" } }) as Buffer) as { result: { header: WireRecord } };
    const h = echoed.result.header;
    expect([h.pathname, h.xattrName, h.target, h.fileInfo?.name ?? "", ...h.extendedAttributes]).toEqual([w.pathname, w.xattrName, w.target, w.fileInfo?.name ?? "", ...w.extendedAttributes]);
  } else if (method === "List") {
    expect((msg.macs as unknown[]).every((m) => Buffer.isBuffer(m))).toBe(true);
  } else if (method === "Open" || method === "Get") {
    expect(Buffer.isBuffer(msg.chunk ?? msg.config)).toBe(true);
  } else if (method === "Init") {
    expect(typeof msg.origin === "string" && typeof msg.flags === "number").toBe(true);
  }
}

describe("responses as the host decodes them (in process)", () => {
  it("decode to what the host reads, or throw (which the host reports as IO); records pass the host's checks without a throw", async () => {
    await fc.assert(
      fc.asyncProperty(arbResponse, async ({ r, bytes }) => {
        const o = await boundedAllocation(() => host[r.service]![r.method]!.responseDeserialize(Buffer.from(bytes)) as Record<string, unknown>);
        if (o.ok) expectReadable(r.method, r.service, o.value);
        else expect(o.error).toBeInstanceOf(Error);
      }),
      fuzzParams(),
    );
  });
});

// ------------------------------------------------ through a plugin process ---

const FIXTURE = fileURLToPath(new URL("../fixtures/plugins/replay.mjs", import.meta.url));
const dir = await fsp.mkdtemp(join(tmpdir(), "coffer-fuzz-plugin-"));
const PAYLOAD = join(dir, "payload.json");
const OPTIONS: ConnectorOptions = { hostname: "fuzz", os: "linux", arch: "x64", cwd: "/", maxConcurrency: 1, excludes: [], noXattr: false };
const stderr: string[] = [];
const spec = (service: string) => ({
  name: `replay-${service}`,
  executable: FIXTURE,
  args: [service],
  env: { COFFER_FUZZ_PAYLOAD: PAYLOAD },
  timeoutMs: 30_000,
  onStderr: (line: string) => stderr.push(line),
});
const importer = await PluginImporter.start(spec("importer"), "replay", {}, OPTIONS);
const store = await PluginStore.start(spec("store"), "replay", {}, OPTIONS);
afterAll(async () => {
  await importer.close();
  await store.close();
  await fsp.rm(dir, { recursive: true, force: true });
});

/** The plugin's next answers: these messages, as bytes. */
async function answers(frames: Uint8Array[]): Promise<void> {
  await fsp.writeFile(PAYLOAD, JSON.stringify(frames.map((f) => Buffer.from(f).toString("base64"))));
}

/** The outcome failed with the error the host documents: a CofferError naming the plugin, of one of `codes`. */
function expectPluginError(o: Outcome<unknown>, name: string, codes: string[]): void {
  if (o.ok) return;
  const e = o.error;
  if (!(e instanceof CofferError)) expect.fail(`expected the host's plugin error, got ${e instanceof Error ? `${e.constructor.name}: ${e.message}\n${e.stack}` : String(e)}`);
  expect(codes).toContain(e.code);
  expect(e.data.plugin ?? name).toBe(name);
  expect(e.message).toContain(name);
}

/** Messages of `method` (1 to 3): a peer's, mutated, or random bytes. */
function arbFrames(peerService: string, method: string, arb: fc.Arbitrary<unknown>, last?: unknown): fc.Arbitrary<Uint8Array[]> {
  const serialize = (m: unknown) => new Uint8Array(peer[peerService]![method]!.responseSerialize(m));
  const one = fc.oneof(
    { arbitrary: arb.map(serialize), weight: 3 },
    fc.tuple(arb, arbMutations).map(([m, ms]) => mutateAll(serialize(m), ms)),
    fc.uint8Array({ maxLength: 60 }),
  );
  return fc.tuple(fc.array(one, { minLength: 0, maxLength: 3 }), fc.boolean()).map(([fs, end]) => (end && last !== undefined ? [...fs, serialize(last)] : fs));
}

describe("responses through a plugin process", () => {
  it("an import gives well-formed records, or the plugin's IO error", async () => {
    const frames = arbFrames("importer.Importer", "Import", RESPONSES[0]!.arb, { finished: true });
    await fc.assert(
      fc.asyncProperty(frames, async (fs) => {
        await answers(fs);
        const o = await boundedAllocation(async () => {
          const got: ImportRecord[] = [];
          for await (const r of importer.import()) got.push(r);
          return got;
        });
        expectPluginError(o, "replay-importer", ["IO"]);
        if (o.ok) for (const r of o.value) if (r.xattrName === undefined) expectWellFormed(r);
      }),
      fuzzParams({ weight: 0.1 }),
    );
  });

  it("a store's open, mode, size, list and get give what the Store contract says, or the plugin's error", async () => {
    const byName = Object.fromEntries(RESPONSES.filter((r) => r.service === "store").map((r) => [r.method, r]));
    const arbCall = fc.constantFrom("Open", "Mode", "Size", "List", "Get", "RangedGet").chain((call) => {
      const r = byName[call === "RangedGet" ? "Get" : call]!;
      return fc.record({ call: fc.constant(call), frames: arbFrames("store.Store", r.method, r.arb), length: fc.nat({ max: 100 }) });
    });
    const mac = new Uint8Array(32).fill(7);
    await fc.assert(
      fc.asyncProperty(arbCall, async ({ call, frames: fs, length }) => {
        await answers(fs);
        const o = await boundedAllocation(async (): Promise<unknown> => {
          switch (call) {
            case "Open":
              return store.open();
            case "Mode":
              return store.mode();
            case "Size":
              return store.size();
            case "List": {
              const macs: Uint8Array[] = [];
              for await (const m of store.list(Resource.STATE)) macs.push(m);
              for (const m of macs) expect(m.byteLength).toBe(32);
              return macs;
            }
            case "Get":
              return store.get(Resource.PACKFILE, mac);
            default: {
              const b = await store.get(Resource.PACKFILE, mac, { offset: 0, length });
              expect(b.byteLength).toBe(length);
              return b;
            }
          }
        });
        expectPluginError(o, "replay-store", call === "RangedGet" ? ["IO", "CORRUPT"] : ["IO"]);
        if (o.ok && (call === "Open" || call === "Get")) expect(o.value).toBeInstanceOf(Uint8Array);
        if (o.ok && (call === "Mode" || call === "Size")) expect(typeof o.value).toBe("number");
      }),
      fuzzParams({ weight: 0.1 }),
    );
  });
});
