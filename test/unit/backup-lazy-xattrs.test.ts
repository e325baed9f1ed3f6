/**
 * Lazy extended attributes (ImportOptions.lazyXattrs): the backup reads an
 * entry's attributes only when it cannot take its parent's, i.e. unless the
 * file is unchanged, ctime included (setting an attribute changes ctime).
 */
import { describe, expect, it } from "vitest";
import { MemoryStore } from "../../src/connectors/memory/store.js";
import type { ImportOptions, Importer, ImportRecord, Xattr } from "../../src/connectors/records.js";
import { Repository } from "../../src/repository/repository.js";
import { backup } from "../../src/snapshot/backup/backup.js";
import { TreeReader } from "../../src/snapshot/tree-reader.js";

interface File {
  name: string;
  ctimeNs: bigint;
  xattrs: Xattr[];
}

/** A directory of files whose attributes are read on demand, counting the reads. */
class LazyImporter implements Importer {
  readonly origin = "test";
  readonly type = "lazy";
  readonly root = "/lazy";
  readonly flags = 0;
  reads: string[] = [];
  sawLazy = false;
  constructor(private readonly files: File[]) {}
  async ping(): Promise<void> {}
  async close(): Promise<void> {}
  async *import(opts: ImportOptions = {}): AsyncGenerator<ImportRecord> {
    this.sawLazy = opts.lazyXattrs === true;
    const base = { size: 1, mode: 0o644, mtimeNs: 1n, dev: 1n, uid: 0, gid: 0, nlink: 1 };
    yield {
      pathname: "/",
      fileInfo: { ...base, name: "", kind: "dir", ino: 1n, ctimeNs: 1n },
      readXattrs: () => {
        this.reads.push("/");
        return attr("root");
      },
    };
    let ino = 2n;
    for (const f of this.files) {
      yield {
        pathname: `/${f.name}`,
        fileInfo: { ...base, name: f.name, kind: "file", ino: ino++, ctimeNs: f.ctimeNs },
        open: async () => (async function* () {
          yield Uint8Array.of(7);
        })(),
        readXattrs: () => {
          this.reads.push(f.name);
          return f.xattrs;
        },
      };
    }
  }
}

const attr = (v: string): Xattr[] => [{ name: "user.v", value: Buffer.from(v) }];

async function xattrOf(repo: Repository, root: Awaited<ReturnType<typeof backup>>["header"]["root"], path: string): Promise<string | undefined> {
  const e = await new TreeReader(repo).lookup(root, path);
  const x = e?.xattrs?.[0];
  return x ? Buffer.from(x.value).toString() : undefined;
}

describe("backup: lazy extended attributes", () => {
  it("reads them for new and changed files only, and keeps the parent's for unchanged ones", async () => {
    const store = new MemoryStore();
    await Repository.create(store, { passphrase: null, packSize: 256 * 1024, kdf: { memory: 8192, passes: 1, parallelism: 1 } });
    const repo = await Repository.open(store, { passphrase: async () => null });
    const run = (imp: Importer) => backup(repo, { importer: imp, hostname: "h", username: "u", os: "linux", arch: "x64", workers: 0 });
    const files: File[] = Array.from({ length: 20 }, (_, i) => ({ name: `f${String(i).padStart(2, "0")}`, ctimeNs: 10n, xattrs: attr(`one-${i}`) }));

    const first = new LazyImporter(files);
    const h1 = (await run(first)).header;
    expect(first.sawLazy).toBe(true);
    expect(first.reads).toHaveLength(21);
    expect(await xattrOf(repo, h1.root, "/")).toBe("root");

    // Unchanged: only the few files that arrive before the parent's listing is loaded are read.
    const second = new LazyImporter(files);
    const h2 = (await run(second)).header;
    expect(second.reads.length).toBeLessThan(files.length / 2);
    expect(second.reads).not.toContain("/"); // a directory with the same ctime keeps its parent's attributes too
    expect(await xattrOf(repo, h2.root, "/")).toBe("root");
    expect(await xattrOf(repo, h2.root, "/f05")).toBe("one-5");
    expect(toHexTree(h2.root.tree)).toBe(toHexTree(h1.root.tree));

    // An attribute set since: a new ctime, so the file is read again, attributes and content.
    const changed = files.map((f, i) => (i === 7 ? { ...f, ctimeNs: 11n, xattrs: attr("two") } : f));
    const third = new LazyImporter(changed);
    const h3 = (await run(third)).header;
    expect(third.reads).toContain("f07");
    expect(await xattrOf(repo, h3.root, "/f07")).toBe("two");
    expect(await xattrOf(repo, h3.root, "/f08")).toBe("one-8");
    expect(h3.summary.readBytes).toBe(1);
    await repo.close();
  });
});

const toHexTree = (t: Uint8Array | undefined) => (t ? Buffer.from(t).toString("hex") : "");
