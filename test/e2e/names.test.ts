/**
 * Names are bytes, end to end with the built CLI: a tree whose file,
 * directory, symlink and symlink-target names are not valid UTF-8 comes
 * back byte-exact, and `ls`, `ls --json`, `cat` and `restore SNAP:PATH`
 * show and address such names in their escaped form.
 */
import { promises as fsp, lstatSync, mkdirSync, readdirSync, renameSync, readFileSync, readlinkSync, symlinkSync, writeFileSync } from "node:fs";
import { execFileSync } from "node:child_process";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { xattrSyscalls } from "../../src/connectors/fs/xattr-native.js";
import { describeRun, EXIT, expectExit, FAST_KDF, lines, parseJson } from "../helpers/cli.js";
import { cofferInProcess } from "../helpers/in-process.js";

const env = { COFFER_PASSPHRASE: "names are bytes" };
const b = (s: string) => Buffer.from(s, "latin1");
const join = (...parts: Buffer[]) => Buffer.concat(parts.flatMap((p, i) => (i === 0 ? [p] : [b("/"), p])));

/** Entry names of the tree, as bytes (latin1 strings map one char to one byte). */
const FILES: [string, string][] = [
  ["lat\xe9", "latin-1 name\n"],
  ["bad\xff\xfename", "two invalid bytes\n"],
  ["caf\xc3\xa9", "valid UTF-8\n"],
  ["back\\slash", "a backslash\n"],
  ["dir\x80/inner\xe8.txt", "inside a raw directory\n"],
  ["dir\x80/" + "long\xe9".repeat(30), "a long raw name\n"],
];
const LINKS: [string, string][] = [
  ["link\xf0", "lat\xe9"],
  ["dir\x80/up\xfe", "../bad\xff\xfename"],
];

let base = "";
let src: Buffer;
let repo = "";

function makeTree(root: Buffer): void {
  mkdirSync(root);
  mkdirSync(join(root, b("dir\x80")));
  mkdirSync(join(root, b("empty\xa0dir")));
  for (const [name, content] of FILES) writeFileSync(join(root, b(name)), content);
  for (const [name, target] of LINKS) symlinkSync(b(target), join(root, b(name)));
  // Extended attributes whose names (and a value) are not UTF-8, on a raw-named file and directory.
  const sys = xattrSyscalls();
  sys.set(join(root, b("lat\xe9")), b("user.n\xe4me"), b("v\xff"));
  sys.set(join(root, b("dir\x80")), b("user.\xff\xfe"), b("on a dir"));
  sys.set(join(root, b("caf\xc3\xa9")), b("user.caf\xc3\xa9"), b("valid"));
  // mkfifo's argument is text: make the FIFO under a plain name, then rename it to its bytes.
  execFileSync("mkfifo", [path.join(base, "fifo")]);
  renameSync(path.join(base, "fifo"), join(root, b("fifo\xe9")));
}

/** Every entry below `root` as "kind name [content|target]", names in latin1 so each byte is one char. */
function describeTree(root: Buffer): string[] {
  const out: string[] = [];
  const walk = (dir: Buffer, rel: string) => {
    for (const name of readdirSync(dir, { encoding: "buffer" })) {
      const abs = join(dir, name);
      const r = rel + "/" + name.toString("latin1");
      const st = lstatSync(abs);
      const sys = xattrSyscalls();
      const attrs = st.isSymbolicLink() ? [] : sys.list(abs).map((n) => `${n.toString("latin1")}=${sys.get(abs, n).toString("latin1")}`);
      if (attrs.length > 0) out.push(`xattrs ${rel}/${name.toString("latin1")} ${attrs.sort().join(",")}`);
      if (st.isDirectory()) {
        out.push(`dir ${r}`);
        walk(abs, r);
      } else if (st.isSymbolicLink()) out.push(`link ${r} -> ${readlinkSync(abs, { encoding: "buffer" }).toString("latin1")}`);
      else if (st.isFIFO()) out.push(`fifo ${r}`);
      else out.push(`file ${r} ${readFileSync(abs).toString("latin1")}`);
    }
  };
  walk(root, "");
  return out.sort();
}

beforeAll(async () => {
  base = await fsp.mkdtemp(path.join(tmpdir(), "coffer-names-"));
  src = join(b(base), b("src"));
  makeTree(src);
  repo = path.join(base, "repo");
  expectExit(await cofferInProcess(["at", repo, "create", ...FAST_KDF], { env }), EXIT.OK);
  expectExit(await cofferInProcess(["at", repo, "backup", "--tag", "names", path.join(base, "src")], { env }), EXIT.OK);
});
afterAll(async () => {
  if (base) await fsp.rm(base, { recursive: true, force: true });
});

describe("names that are not UTF-8", () => {
  it("round-trip byte-exact through backup and restore", async () => {
    const to = path.join(base, "restored");
    const r = expectExit(await cofferInProcess(["at", repo, "restore", "--to", to], { env }), EXIT.OK);
    expect(r.stderr, describeRun(r)).not.toMatch(/error|warning: .*(ENOENT|EILSEQ)/i);
    expect(describeTree(b(to))).toEqual(describeTree(src));
    expect(describeTree(src).length).toBeGreaterThan(10);
    expect(describeTree(src)).toContain("xattrs /lat\xe9 user.n\xe4me=v\xff");
  });

  it("ls shows them escaped as GNU ls -b does", async () => {
    const r = expectExit(await cofferInProcess(["at", repo, "ls", "-R", "latest"], { env }), EXIT.OK);
    const paths = lines(r.stdout).map((l) => l.slice(l.indexOf(" /") + 1));
    expect(paths).toContain("/lat\\351");
    expect(paths).toContain("/bad\\377\\376name");
    expect(paths).toContain("/café");
    expect(paths).toContain("/back\\\\slash");
    expect(paths).toContain("/dir\\200/inner\\350.txt");
    expect(paths).toContain("/link\\360 -> lat\\351");
    expect(paths).toContain("/dir\\200/up\\376 -> ../bad\\377\\376name");
    // Nothing that is not valid UTF-8 or a control character reaches the output.
    // eslint-disable-next-line no-control-regex
    expect(r.stdoutBytes.toString("utf8")).not.toMatch(/[\ufffd\u0000-\u0009\u000b-\u001f]/);
  });

  it("ls --json gives U+FFFD names with the exact bytes in raw fields", async () => {
    const r = expectExit(await cofferInProcess(["at", repo, "ls", "-R", "--json", "latest"], { env }), EXIT.OK);
    const rows = parseJson<{ path: string; name: string; raw?: string; raw_path?: string; target?: string; raw_target?: string }[]>(r);
    const lat = rows.find((e) => e.raw !== undefined && Buffer.from(e.raw, "base64").equals(b("lat\xe9")));
    expect(lat, describeRun(r)).toMatchObject({ path: "/lat\ufffd", name: "lat\ufffd", raw_path: b("/lat\xe9").toString("base64") });
    const link = rows.find((e) => e.name === "link\ufffd");
    expect(link?.target).toBe("lat\ufffd");
    expect(Buffer.from(link?.raw_target ?? "", "base64")).toEqual(b("lat\xe9"));
    const cafe = rows.find((e) => e.name === "café");
    expect(cafe).toBeDefined();
    expect(cafe).not.toHaveProperty("raw");
    // Every raw name is given: one per entry whose name is not UTF-8.
    expect(rows.filter((e) => e.raw !== undefined).map((e) => Buffer.from(e.raw!, "base64").toString("latin1")).sort()).toEqual(
      ["lat\xe9", "bad\xff\xfename", "dir\x80", "inner\xe8.txt", "long\xe9".repeat(30), "link\xf0", "up\xfe", "empty\xa0dir", "fifo\xe9"].sort(),
    );
  });

  it("cat and ls address them in the escaped form", async () => {
    const cat = expectExit(await cofferInProcess(["at", repo, "cat", "latest:/dir\\200/inner\\350.txt"], { env }), EXIT.OK);
    expect(cat.stdout).toBe("inside a raw directory\n");
    const lat = expectExit(await cofferInProcess(["at", repo, "cat", "latest:/lat\\351"], { env }), EXIT.OK);
    expect(lat.stdout).toBe("latin-1 name\n");
    // A name holding a real backslash is found as typed, and in its escaped form.
    expect(expectExit(await cofferInProcess(["at", repo, "cat", "latest:/back\\slash"], { env }), EXIT.OK).stdout).toBe("a backslash\n");
    expect(expectExit(await cofferInProcess(["at", repo, "cat", "latest:/back\\\\slash"], { env }), EXIT.OK).stdout).toBe("a backslash\n");
    const ls = expectExit(await cofferInProcess(["at", repo, "ls", "latest:/dir\\200"], { env }), EXIT.OK);
    expect(ls.stdout).toContain("/dir\\200/inner\\350.txt");
    const missing = await cofferInProcess(["at", repo, "cat", "latest:/lat\\352"], { env });
    expect(missing.exitCode, describeRun(missing)).toBe(EXIT.ERROR);
    expect(missing.stderr).toContain("/lat\\352: no such file");
  });

  it("restore SNAP:PATH of a raw directory restores it under its own bytes", async () => {
    const to = path.join(base, "sub");
    expectExit(await cofferInProcess(["at", repo, "restore", "--to", to, "latest:/dir\\200"], { env }), EXIT.OK);
    const names = readdirSync(to, { encoding: "buffer" }).map((n) => n.toString("latin1")).sort();
    expect(names).toEqual(["inner\xe8.txt", "long\xe9".repeat(30), "up\xfe"].sort());
    expect(readFileSync(join(b(to), b("inner\xe8.txt")), "utf8")).toBe("inside a raw directory\n");
  });

  it("round-trip byte-exact through a tar archive out and back in", async () => {
    const tar = path.join(base, "out.tar");
    expectExit(await cofferInProcess(["at", repo, "restore", "--to", `tar:${tar}`], { env }), EXIT.OK);
    // GNU tar reads the exporter's archive with the names' own bytes.
    const listed = execFileSync("tar", ["--quoting-style=literal", "-tf", tar]).toString("latin1").split("\n");
    expect(listed.some((l) => l.replace(/^\.?\//, "") === "lat\xe9")).toBe(true);
    expect(listed.some((l) => l.replace(/^\.?\//, "").replace(/\/$/, "") === "dir\x80/" + "long\xe9".repeat(30))).toBe(true);
    const again = path.join(base, "again");
    expectExit(await cofferInProcess(["at", again, "create", ...FAST_KDF], { env }), EXIT.OK);
    expectExit(await cofferInProcess(["at", again, "backup", `tar:${tar}`], { env }), EXIT.OK);
    const to = path.join(base, "from-tar");
    expectExit(await cofferInProcess(["at", again, "restore", "--to", to], { env }), EXIT.OK);
    expect(describeTree(b(to))).toEqual(describeTree(src));
  });

  it("a second backup of the same tree finds every raw name unchanged", async () => {
    const r = expectExit(await cofferInProcess(["at", repo, "backup", "--json", path.join(base, "src")], { env }), EXIT.OK);
    const s = parseJson<{ readBytes: number; errors: number }>(r);
    expect(s.errors).toBe(0);
    expect(s.readBytes, describeRun(r)).toBe(0);
  });
});
