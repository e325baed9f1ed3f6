/**
 * Plugin manifests (src/pkg/manifest.ts): Plakar's fields parsed, every
 * invalid field named in the error, unknown keys ignored as Plakar does.
 */
import { describe, expect, it } from "vitest";
import { LocationFlag } from "../../src/connectors/flags.js";
import { parseManifest } from "../../src/pkg/manifest.js";

const GOOD = `
name: s3-ish
display_name: An S3-ish store
description: keeps things
version: 1.2.3
api_version: 1.0.0
license: ISC
homepage: https://example.invalid/s3-ish
tags: [storage, cloud]
flags: [ignored-by-plakar]
connectors:
  - type: storage
    protocols: [s3ish, s3ish+http]
    location_flags: []
    executable: bin/store.js
    args: ["--serve"]
    extra_files: [lib, data/table.bin]
    parameters:
      - name: region
        type: string
        required: true
        description: the region
        inclusion: [eu, us]
      - name: part_size
        type: bytes
        default: 8MiB
        greater_than: 1048575
        description: upload part size
  - type: importer
    protocols: [s3ish]
    location_flags: [stream, needack]
    executable: bin/importer.js
`;

function errorOf(text: string): string {
  try {
    parseManifest(text, "m.yaml");
  } catch (e) {
    expect((e as { code?: string }).code).toBe("USAGE");
    return (e as Error).message;
  }
  throw new Error("expected the manifest to be refused");
}

const edit = (from: string, to: string) => {
  expect(GOOD).toContain(from);
  return GOOD.replace(from, to);
};

describe("parseManifest", () => {
  it("reads every field of a valid manifest", () => {
    const m = parseManifest(GOOD, "m.yaml");
    expect(m).toMatchObject({ name: "s3-ish", displayName: "An S3-ish store", version: "1.2.3", apiVersion: "1.0.0", license: "ISC", tags: ["storage", "cloud"] });
    expect(m.connectors).toHaveLength(2);
    const [store, imp] = m.connectors;
    expect(store).toMatchObject({ type: "storage", protocols: ["s3ish", "s3ish+http"], flags: 0, executable: "bin/store.js", args: ["--serve"], extraFiles: ["lib", "data/table.bin"] });
    expect(store!.parameters).toEqual([
      { name: "region", type: "string", required: true, description: "the region", inclusion: ["eu", "us"] },
      { name: "part_size", type: "bytes", default: "8MiB", greaterThan: 1048575, description: "upload part size" },
    ]);
    expect(imp!.flags).toBe(LocationFlag.STREAM | LocationFlag.NEEDACK);
    expect(imp!.args).toEqual([]);
  });

  it.each([
    ["name: s3-ish", "name: S3 ISH", "name"],
    ["version: 1.2.3", "version: latest", "version"],
    ["api_version: 1.0.0\n", "", "api_version"],
    ["    protocols: [s3ish, s3ish+http]", "    protocols: [s3ish, x]", "connectors[0].protocols[1]"],
    ["    protocols: [s3ish, s3ish+http]", "    protocols: []", "connectors[0].protocols"],
    ["  - type: importer", "  - type: sidecar", "connectors[1].type"],
    ["    location_flags: [stream, needack]", "    location_flags: [stream, turbo]", "connectors[1].location_flags[1]"],
    ["    executable: bin/importer.js", "    executable: ../outside.js", "connectors[1].executable"],
    ["    executable: bin/importer.js", "    executable: /usr/bin/env", "connectors[1].executable"],
    ["    extra_files: [lib, data/table.bin]", "    extra_files: [lib, ../../etc/passwd]", "connectors[0].extra_files[1]"],
    ["        type: bytes", "        type: colour", "connectors[0].parameters[1].type"],
    ["        greater_than: 1048575", "        greater_than: lots", "connectors[0].parameters[1].greater_than"],
    ["      - name: part_size", "      - name: region", "connectors[0].parameters[1].name"],
  ])("names the bad field: %s -> %s", (from, to, field) => {
    const msg = errorOf(edit(from, to));
    expect(msg).toContain("m.yaml");
    expect(msg).toContain(field);
  });

  it("refuses a protocol declared twice for the same connector type, and non-mappings", () => {
    expect(errorOf(edit("  - type: importer\n    protocols: [s3ish]", "  - type: storage\n    protocols: [s3ish]"))).toContain("connectors[1].protocols");
    expect(errorOf("- just\n- a list\n")).toContain("mapping");
    expect(errorOf("name: [unclosed\n")).toContain("YAML");
    expect(errorOf("name: x\nversion: 1.0.0\napi_version: 1.0.0\n")).toContain("connectors");
  });
});
