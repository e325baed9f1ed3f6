/**
 * The plugin wire's name fields at the message level (name-codec.ts):
 * coffer writes a UTF-8 name as the same bytes a standard protobuf codec
 * of the unchanged .proto files writes, the standard codec reads what
 * coffer writes, and a name that is not UTF-8 travels as its own bytes.
 */
import { fileURLToPath } from "node:url";
import type { MethodDefinition } from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import { describe, expect, it } from "vitest";
import { LOADER_OPTIONS, services, toWireXattrRecord, type WireRecord } from "../../src/connectors/plugin/wire.js";
import { nameFromBytes, nameToBytes } from "../../src/util/names.js";

const PROTO = fileURLToPath(new URL("../../proto/", import.meta.url));
/** The .proto files as any peer loads them: every name field a proto3 string. */
const standard = loadSync(["connectors.proto", "importer.proto", "exporter.proto"], { ...LOADER_OPTIONS, includeDirs: [PROTO] });

type Method = MethodDefinition<object, object>;
const coffer = services();
const ours = { importResponse: coffer.importer.Import as Method, openRequest: coffer.importer.Open as Method, exportRequest: coffer.exporter.Export as Method };
const theirs = {
  importResponse: (standard["importer.Importer"] as unknown as Record<string, Method>).Import as Method,
  exportRequest: (standard["plakar.exporter.Exporter"] as unknown as Record<string, Method>).Export as Method,
};

function record(pathname: string, name: string, target: string, xattrs: string[]): WireRecord {
  const r = toWireXattrRecord(pathname, name, 3);
  return { ...r, isXattr: false, xattrName: xattrs[0] ?? "", target, extendedAttributes: xattrs };
}

const UTF8 = [
  ["/plain", "plain", "", []],
  [`/${"long-ascii-".repeat(8)}`, "long-ascii", "../t", ["user.a"]],
  [`/caf\u00e9/${"ü".repeat(30)}-🦀`, `${"ü".repeat(30)}-🦀`, `${"→".repeat(25)}/x`, ["user.\u00e9", `user.${"ß".repeat(40)}`]],
  ["/fffd-\ufffd", "fffd-\ufffd", "\ufffd", ["user.\ufffd"]],
] as const;

describe("UTF-8 names on the wire", () => {
  it.each(UTF8)("%s: the same bytes as the standard codec, and each codec reads the other's", (pathname, name, target, xattrs) => {
    const msg = { record: record(pathname, name, target, [...xattrs]), finished: false };
    const mine = ours.importResponse.responseSerialize(msg);
    const std = theirs.importResponse.responseSerialize(msg);
    expect(Buffer.compare(mine, std)).toBe(0);
    expect(theirs.importResponse.responseDeserialize(mine)).toEqual(msg);
    expect(ours.importResponse.responseDeserialize(std)).toEqual(msg);
  });

  it("the export stream's records and chunks too", () => {
    const rec = { packet: "record", record: record("/d/é", "é", "", ["user.x"]) };
    expect(Buffer.compare(ours.exportRequest.requestSerialize(rec), theirs.exportRequest.requestSerialize(rec))).toBe(0);
    const chunk = { chunk: Buffer.from([0xe9, 0xff, 0x00]) };
    expect(Buffer.compare(ours.exportRequest.requestSerialize(chunk), theirs.exportRequest.requestSerialize(chunk))).toBe(0);
    expect(ours.exportRequest.requestDeserialize(theirs.exportRequest.requestSerialize(chunk))).toMatchObject({ packet: "chunk", chunk: chunk.chunk });
  });
});

describe("names that are not UTF-8 on the wire", () => {
  const raw = (s: string) => nameFromBytes(Buffer.from(s, "latin1"));
  const short = raw("/lat\xe9");
  const long = raw(`/${"x".repeat(45)}-\xff\xfe-\xed\xb3\xa9-\xc3`);
  const cases = [
    ["short (protobufjs's own UTF-8 writer)", short],
    ["long (protobufjs's Buffer#utf8Write path)", long],
  ] as const;

  it.each(cases)("%s: written as its own bytes and read back to the same string", (_what, pathname) => {
    const name = pathname.slice(pathname.lastIndexOf("/") + 1);
    const target = raw("t\xe9rget/") + name;
    const msg = { record: record(pathname, name, target, [raw("user.\xe9"), `user.${name}`]), finished: false };
    const bytes = ours.importResponse.responseSerialize(msg);
    for (const s of [pathname, name, target, raw("user.\xe9")]) expect(bytes.includes(nameToBytes(s)), JSON.stringify(s)).toBe(true);
    expect(bytes.includes(Buffer.from("\ufffd", "utf8"))).toBe(false);
    expect(ours.importResponse.responseDeserialize(bytes)).toEqual(msg);
  });

  it("a standard codec reading such a record sees U+FFFD where coffer sees the bytes", () => {
    const msg = { record: record(short, raw("lat\xe9"), "", []), finished: false };
    const seen = theirs.importResponse.responseDeserialize(ours.importResponse.responseSerialize(msg)) as { record: WireRecord };
    expect(seen.record.pathname).toBe("/lat\ufffd");
  });

  it("an error message quoting such a name is written valid UTF-8, each escaped byte as \\ooo", () => {
    const cases = [
      [`no ${short}`, "no /lat\\351"],
      [`cannot read ${long}`, `cannot read /${"x".repeat(45)}-\\377\\376-\\355\\263\\251-\\303`],
    ] as const;
    for (const [error, shown] of cases) {
      const msg = { result: { header: null, error } };
      // The standard decoder reads exactly the escaped text: no U+FFFD, so the bytes were valid UTF-8.
      const seen = theirs.exportRequest.responseDeserialize(ours.exportRequest.responseSerialize(msg)) as { result: { error: string } };
      expect(seen.result.error).toBe(shown);
    }
  });

  it("the caller's message is left as it was, and the Open request carries the name back", () => {
    const rec = record(long, "n", "", []);
    const before = structuredClone(rec);
    const bytes = ours.openRequest.requestSerialize({ record: rec });
    expect(rec).toEqual(before);
    expect((ours.openRequest.requestDeserialize(bytes) as { record: WireRecord }).record.pathname).toBe(long);
  });
});
