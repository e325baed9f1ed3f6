/**
 * Names are bytes through the built CLI and the shipped plugfs plugins
 * (packaged and installed with `coffer pkg`): a directory whose file,
 * directory and symlink names (and a symlink target) are not UTF-8, some
 * longer than 40 bytes, is backed up through the plugfs importer and
 * restored through the plugfs exporter, and the restored tree holds the
 * same names, bytes for bytes, with the same contents.
 */
import { closeSync, lstatSync, mkdirSync, openSync, promises as fsp, readdirSync, readFileSync, readlinkSync, symlinkSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type CofferResult, type Env, EXIT, expectExit, expectNoStackTrace, FAST_KDF, PROJECT_ROOT, parseJson } from "../helpers/cli.js";
import { cofferInProcess } from "../helpers/in-process.js";

let base: string;
let data: string;
let n = 0;
const fresh = (what: string) => path.join(base, `${what}-${++n}`);

beforeAll(async () => {
  base = await fsp.mkdtemp(path.join(tmpdir(), "coffer-e2e-plugin-names-"));
  data = path.join(base, "data");
  await fsp.mkdir(path.join(base, "tmp"));
  await fsp.mkdir(data);
});
afterAll(async () => {
  await fsp.rm(base, { recursive: true, force: true });
});

const env = (): Env => ({ HOME: base, XDG_DATA_HOME: data, TMPDIR: path.join(base, "tmp"), COFFER_PASSPHRASE: "plugin-names" });

async function run(args: string[], code: number = EXIT.OK): Promise<CofferResult> {
  const r = await cofferInProcess(args, { env: env(), cwd: base });
  expectNoStackTrace(r);
  return expectExit(r, code);
}

const b = (s: string) => Buffer.from(s, "latin1");
/** `dir` joined with name bytes, as a Buffer path for node:fs. */
const join = (dir: Buffer, name: Buffer) => Buffer.concat([dir, b("/"), name]);
const LONG = Buffer.concat([b("a-file-name-well-past-forty-bytes-"), b("\xe9\xe8\xff"), Buffer.from("-é-", "utf8"), b("x".repeat(20)), b("\xc3")]);

function writeFile(p: Buffer, content: string): void {
  const fd = openSync(p, "w", 0o644);
  writeSync(fd, content);
  closeSync(fd);
}

/** Makes the tree under `root`: names of Latin-1 bytes, invalid sequences, a long one, a symlink with such a target. */
function makeTree(root: string): void {
  const r = Buffer.from(root);
  writeFile(join(r, b("lat\xe9")), "latin-1 e acute\n");
  writeFile(join(r, b("lat\xe8")), "latin-1 e grave\n");
  writeFile(join(r, b("bad\xff\xfename")), "ff fe\n");
  writeFile(join(r, Buffer.from("café", "utf8")), "valid UTF-8\n");
  const dir = join(r, b("dir\x80"));
  mkdirSync(dir);
  writeFile(join(dir, LONG), "a long name\n");
  symlinkSync(b("../lat\xe9"), join(dir, b("link\xff")));
  symlinkSync(Buffer.concat([b("t\xe9rget/"), LONG]), join(r, b("dangling\xfe")));
}

interface Node {
  kind: string;
  mode: number;
  content?: string;
  target?: string;
}

/** The tree as bytes: hex of each path relative to `root` -> kind, mode, content or target (hex). */
function bytesTree(root: string): Map<string, Node> {
  const out = new Map<string, Node>();
  const walk = (dir: Buffer, rel: Buffer) => {
    for (const name of readdirSync(dir, { encoding: "buffer" })) {
      const p = join(dir, name);
      const relP = rel.length === 0 ? name : join(rel, name);
      const st = lstatSync(p);
      const node: Node = { kind: st.isDirectory() ? "dir" : st.isSymbolicLink() ? "symlink" : st.isFile() ? "file" : "other", mode: st.mode & 0o7777 };
      if (st.isFile()) node.content = readFileSync(p).toString("hex");
      if (st.isSymbolicLink()) node.target = readlinkSync(p, { encoding: "buffer" }).toString("hex");
      out.set(relP.toString("hex"), node);
      if (st.isDirectory()) walk(p, relP);
    }
  };
  walk(Buffer.from(root), Buffer.alloc(0));
  return out;
}

describe("non-UTF-8 names through the plugfs plugins and the CLI", () => {
  it("back up through the plugfs importer and restore through the plugfs exporter byte-exact", async () => {
    const manifest = path.join(PROJECT_ROOT, "dist", "plugins", "plugfs", "manifest.yaml");
    const out = fresh("pkgs");
    await fsp.mkdir(out);
    await run(["pkg", "add", (await run(["pkg", "create", manifest, "--out", out])).stdout.trim()]);

    const src = fresh("src");
    mkdirSync(src);
    makeTree(src);
    const want = bytesTree(src);
    expect(want.size).toBe(8);
    const repo = fresh("repo");
    await run(["at", repo, "create", ...FAST_KDF]);
    const backup = parseJson<{ id: string; files: number; errors: number }>(await run(["at", repo, "backup", "--json", `plugfs:${src}`]));
    expect(backup.errors).toBe(0);
    const target = fresh("restored");
    await run(["at", repo, "restore", "-q", "--to", `plugfs:${target}`, backup.id.slice(0, 8)]);
    expect(bytesTree(target)).toEqual(want);
  }, 120_000);
});
