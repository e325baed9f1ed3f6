/**
 * Names are bytes across the plugin wire: pathnames, symlink targets,
 * FileInfo.name and xattr names that are not UTF-8 (and long ones, which
 * protobufjs writes through Buffer#utf8Write) go from coffer's host to an
 * SDK plugin process and back byte-exact, for the importer (records, then
 * the host's Open requests naming them) and the exporter (records, then
 * the headers of the plugin's results naming them). Fixtures: test/fixtures/plugins/names-*.mjs.
 */
import { promises as fsp } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { MethodDefinition } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { PluginExporter } from "../../src/connectors/plugin/exporter.js";
import { PluginImporter } from "../../src/connectors/plugin/importer.js";
import { services, type WireResult } from "../../src/connectors/plugin/wire.js";
import type { ConnectorOptions, ExportRecord, FileInfo, ImportRecord } from "../../src/connectors/records.js";
import { importerKit, type ExpectedEntry } from "../../src/sdk/kits/index.js";
import { nameFromBytes, nameToBytes } from "../../src/util/names.js";
import { vitestHarness } from "../conformance/harness.js";

const FIXTURES = fileURLToPath(new URL("../fixtures/plugins/", import.meta.url));
const stderr: string[] = [];
const spec = (file: string) => ({ name: file, executable: join(FIXTURES, file), onStderr: (l: string) => stderr.push(l) });

const b = (s: string) => Buffer.from(s, "latin1");
const cat = (...parts: Buffer[]) => Buffer.concat(parts);
/** Longer than protobufjs's 40-character cut-off, with a valid é, invalid bytes and a truncated sequence at the end. */
const LONG = cat(Buffer.from("a-name-longer-than-forty-bytes-with-é-and-", "utf8"), b("\xe9\xff-"), Buffer.from("x".repeat(30)), b("-cut-\xc3"));
/** Valid UTF-8 only, long, with a 4-byte character: the bytes the wire always carried. */
const UTF8_LONG = Buffer.from(`utf8-${"ü".repeat(30)}-🦀-${"z".repeat(20)}`, "utf8");

interface Spec {
  pathname: Buffer;
  kind: "dir" | "file" | "symlink";
  target?: Buffer;
  content?: Buffer;
  xattrs?: { name: Buffer; value: Buffer }[];
}

const at = (...components: Buffer[]) => cat(...components.flatMap((c) => [b("/"), c]));
const TREE: Spec[] = [
  { pathname: b("/"), kind: "dir" },
  // Two names that a lossy wire would both make "lat\uFFFD": their contents tell them apart.
  { pathname: at(b("lat\xe9")), kind: "file", content: b("e9"), xattrs: [{ name: b("user.n\xe9"), value: b("v1") }, { name: cat(b("user."), LONG), value: b("v2") }] },
  { pathname: at(b("lat\xe8")), kind: "file", content: b("e8") },
  { pathname: at(b("bad\xff\xfename")), kind: "file", content: b("ff fe") },
  { pathname: at(b("dir\x80")), kind: "dir" },
  { pathname: at(b("dir\x80"), LONG), kind: "file", content: b("long") },
  { pathname: at(b("dir\x80"), b("link\xff")), kind: "symlink", target: cat(b("t\xe9rget/"), LONG) },
  { pathname: at(UTF8_LONG), kind: "file", content: b("utf8") },
  // A real U+FFFD (valid) beside the bytes of an encoded surrogate (invalid): different bytes, different names.
  { pathname: at(b("fffd-\xef\xbf\xbd-cesu-\xed\xb3\xa9")), kind: "file", content: b("fffd") },
];

const baseName = (p: Buffer) => (p.length === 1 ? Buffer.alloc(0) : p.subarray(p.lastIndexOf(0x2f) + 1));
const hex = (x: Buffer) => x.toString("hex");
const byHex = (r: { pathname: string }) => hex(nameToBytes(r.pathname));

let base: string;
beforeAll(async () => {
  base = await fsp.mkdtemp(join(tmpdir(), "coffer-plugin-names-"));
});
afterAll(async () => {
  await fsp.rm(base, { recursive: true, force: true });
});

const OPTIONS: ConnectorOptions = { hostname: "testhost", os: "linux", arch: "x64", cwd: "/", maxConcurrency: 4, excludes: [], noXattr: false };

async function readAll(src: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const p of src) parts.push(Buffer.from(p));
  return Buffer.concat(parts);
}

/** The names importer's config: TREE, names in hex. */
function importerConfig(): Record<string, string> {
  return {
    records: JSON.stringify(
      TREE.map((e) => ({
        pathname: hex(e.pathname),
        name: hex(baseName(e.pathname)),
        kind: e.kind,
        ...(e.target && { target: hex(e.target) }),
        ...(e.content && { content: hex(e.content) }),
        ...(e.xattrs && { xattrs: e.xattrs.map((x) => ({ name: hex(x.name), value: hex(x.value) })) }),
      })),
    ),
  };
}

describe("non-UTF-8 names through an SDK importer plugin", () => {
  it("reach the host byte-exact, and the host's Open requests find each record by its bytes", async () => {
    const imp = await PluginImporter.start(spec("names-importer.mjs"), "names", importerConfig(), OPTIONS);
    try {
      const entries = new Map<string, ImportRecord>();
      const xattrs: { pathname: string; name: string; value: Buffer }[] = [];
      const contents = new Map<string, Buffer>();
      for await (const r of imp.import({ xattrRecords: true })) {
        if (r.xattrName !== undefined) xattrs.push({ pathname: byHex(r), name: hex(nameToBytes(r.xattrName)), value: r.open ? await readAll(await r.open()) : Buffer.alloc(0) });
        else {
          entries.set(byHex(r), r);
          if (r.open) contents.set(byHex(r), await readAll(await r.open()));
        }
      }
      expect([...entries.keys()].sort()).toEqual(TREE.map((e) => hex(e.pathname)).sort());
      for (const e of TREE) {
        const r = entries.get(hex(e.pathname)) as ImportRecord;
        expect(r.error, hex(e.pathname)).toBeUndefined();
        expect(hex(nameToBytes(r.fileInfo.name))).toBe(hex(baseName(e.pathname)));
        expect(r.fileInfo.kind).toBe(e.kind);
        expect(r.target === undefined ? undefined : hex(nameToBytes(r.target))).toBe(e.target && hex(e.target));
        expect(contents.get(hex(e.pathname))?.toString("latin1")).toBe(e.content?.toString("latin1"));
      }
      const wantX = TREE.flatMap((e) => (e.xattrs ?? []).map((x) => ({ pathname: hex(e.pathname), name: hex(x.name), value: x.value })));
      expect(xattrs).toEqual(wantX);
      // In memory the names are the one escaped form (src/util/names.ts).
      expect(entries.get(hex(at(b("lat\xe9"))))?.pathname).toBe("/lat\udce9");
    } finally {
      await imp.close();
    }
    expect(stderr.join("\n")).not.toMatch(/error/i);
  });
});

// The conformance kit takes such names as any other: what the core relies on holds for them too.
importerKit(vitestHarness(), "SDK importer plugin with non-UTF-8 names", async () => {
  const imp = await PluginImporter.start(spec("names-importer.mjs"), "names", importerConfig(), OPTIONS);
  const expected: ExpectedEntry[] = TREE.map((e) => {
    const x: ExpectedEntry = { pathname: nameFromBytes(e.pathname), kind: e.kind };
    if (e.content) x.content = e.content;
    if (e.target) x.target = nameFromBytes(e.target);
    if (e.xattrs) x.xattrs = e.xattrs.map((a) => ({ name: nameFromBytes(a.name), value: a.value }));
    return x;
  });
  return { importer: imp, expected, cleanup: () => imp.close() };
});

describe("an error message naming a non-UTF-8 name", () => {
  it("reaches the host as the plugin's status, the name's bytes shown escaped", async () => {
    const config = { records: JSON.stringify([{ pathname: hex(at(b("lat\xe9"))), name: hex(b("lat\xe9")), kind: "file", content: "00", failOpen: true }]) };
    const imp = await PluginImporter.start(spec("names-importer.mjs"), "names", config, OPTIONS);
    try {
      const failures: string[] = [];
      for await (const r of imp.import()) {
        if (r.open) failures.push(await r.open().then(readAll).then(() => "opened", (e: unknown) => (e as Error).message));
      }
      expect(failures).toHaveLength(1);
      expect(failures[0]).toContain("cannot read /lat\\351");
    } finally {
      await imp.close();
    }
  });
});

describe("non-UTF-8 names through an SDK exporter plugin", () => {
  it("reach the plugin byte-exact, and its results name each record by its bytes", async () => {
    const report = join(base, "export-report.jsonl");
    // The results' headers as the host decodes them (PluginExporter pairs a result with its record by them).
    const headers: string[] = [];
    const method = services().exporter.Export as MethodDefinition<object, { result: WireResult | null }>;
    const decode = method.responseDeserialize;
    const spy = vi.spyOn(method, "responseDeserialize").mockImplementation((buf) => {
      const m = decode(buf);
      if (m.result?.header) headers.push(hex(nameToBytes(m.result.header.pathname)) + (m.result.header.isXattr ? `:${hex(nameToBytes(m.result.header.xattrName))}` : ""));
      return m;
    });
    const exp = await PluginExporter.start(spec("names-exporter.mjs"), "names", { report }, OPTIONS);
    const info = (e: Spec): FileInfo => ({
      name: nameFromBytes(baseName(e.pathname)),
      kind: e.kind,
      size: e.content?.byteLength ?? 0,
      mode: e.kind === "dir" ? 0o755 : 0o644,
      mtimeNs: 1_700_000_000_000_000_000n,
      dev: 1n,
      ino: 1n,
      uid: 0,
      gid: 0,
      nlink: 1,
    });
    try {
      for (const e of TREE) {
        const rec: ExportRecord = { pathname: nameFromBytes(e.pathname), fileInfo: info(e) };
        if (e.target) rec.target = nameFromBytes(e.target);
        if (e.xattrs) rec.xattrs = e.xattrs.map((x) => ({ name: nameFromBytes(x.name), value: x.value }));
        const content = e.content;
        if (content) rec.content = async function* () {
          yield { offset: 0, length: content.byteLength, data: content };
        };
        const result = await exp.export(rec);
        expect(result.error, hex(e.pathname)).toBeUndefined();
      }
      await exp.finish();
    } finally {
      await exp.close();
      spy.mockRestore();
    }
    expect(headers).toEqual(TREE.flatMap((e) => [hex(e.pathname), ...(e.xattrs ?? []).map((x) => `${hex(e.pathname)}:${hex(x.name)}`)]));
    const lines = (await fsp.readFile(report, "utf8"))
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as unknown);
    expect(lines).toEqual(
      TREE.map((e) => ({
        pathname: hex(e.pathname),
        name: hex(baseName(e.pathname)),
        target: e.target ? hex(e.target) : null,
        xattrs: (e.xattrs ?? []).map((x) => ({ name: hex(x.name), value: hex(x.value) })),
        content: hex(e.content ?? Buffer.alloc(0)),
      })),
    );
  });
});
