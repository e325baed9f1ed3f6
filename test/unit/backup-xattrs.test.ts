/**
 * Extended attributes in a backup (src/snapshot/backup/xattrs.ts): which
 * attributes an entry gets from its record (given, the parent's, or read
 * lazily), and attributes sent as records of their own, before or after
 * their entry, too large, unreadable, or for an entry that never came.
 */
import { describe, expect, it } from "vitest";
import type { ImportRecord, Xattr } from "../../src/connectors/records.js";
import { NOT_LOADED } from "../../src/snapshot/backup/parent.js";
import { MAX_XATTR_VALUE, recordXattrs, withXattr } from "../../src/snapshot/backup/xattrs.js";
import type { Entry } from "../../src/snapshot/tree.js";
import { CofferError } from "../../src/util/errors.js";
import { dirRecord, info, makeParts, makeRepo, settle } from "../helpers/backup-parts.js";

const x = (name: string, v: string): Xattr => ({ name, value: new Uint8Array(Buffer.from(v)) });
const shown = (xs: Xattr[] | undefined) => xs?.map((a) => [a.name, Buffer.from(a.value).toString()]);

/** An attribute record for `pathname` whose value is `value` (or whose open() fails with `fails`). */
function xattrRecord(pathname: string, name: string, value: Uint8Array | string, fails?: Error): ImportRecord {
  return {
    pathname,
    fileInfo: info("", "file"),
    xattrName: name,
    open: async () => {
      if (fails) throw fails;
      return (async function* () {
        yield typeof value === "string" ? new Uint8Array(Buffer.from(value)) : value;
      })();
    },
  };
}

describe("recordXattrs", () => {
  const old: Entry = { name: "f", info: info("f", "file", { ino: 5n, ctimeNs: 9n }), xattrs: [x("user.old", "1")] };

  it("takes the record's own attributes first", () => {
    let reads = 0;
    const r: ImportRecord = { pathname: "/f", fileInfo: info("f", "file"), xattrs: [x("user.a", "a")], readXattrs: () => (reads++, []) };
    expect(shown(recordXattrs(r, old))).toEqual([["user.a", "a"]]);
    expect(reads).toBe(0);
  });

  it("keeps the parent's when inode and ctime match, without reading; else reads them", () => {
    let reads = 0;
    const lazy = (over: Parameters<typeof info>[2]): ImportRecord => ({ pathname: "/f", fileInfo: info("f", "file", over), readXattrs: () => (reads++, [x("user.new", "2")]) });
    expect(shown(recordXattrs(lazy({ ino: 5n, ctimeNs: 9n }), old))).toEqual([["user.old", "1"]]);
    expect(reads).toBe(0);
    expect(shown(recordXattrs(lazy({ ino: 5n, ctimeNs: 10n }), old))).toEqual([["user.new", "2"]]);
    expect(shown(recordXattrs(lazy({ ino: 5n, ctimeNs: 9n }), NOT_LOADED))).toEqual([["user.new", "2"]]);
    expect(shown(recordXattrs(lazy({ ino: 5n, ctimeNs: 9n }), undefined))).toEqual([["user.new", "2"]]);
    expect(reads).toBe(3);
    expect(recordXattrs({ pathname: "/f", fileInfo: info("f", "file") }, old), "none at all").toBeUndefined();
  });
});

describe("withXattr", () => {
  it("adds an attribute, replacing one of the same name", () => {
    expect(shown(withXattr(undefined, x("user.a", "1")))).toEqual([["user.a", "1"]]);
    expect(shown(withXattr([x("user.a", "1"), x("user.b", "2")], x("user.a", "3")))).toEqual([["user.b", "2"], ["user.a", "3"]]);
  });
});

describe("XattrRecords", () => {
  it("adds an attribute to an entry already stored, and answers its record", async () => {
    const repo = await makeRepo();
    const p = makeParts(repo);
    expect(p.entries.saveNow(dirRecord("/d"))).toBe(true);
    const r = xattrRecord("/d", "user.a", "alpha");
    await p.xattrs.save(r);
    expect(shown(p.cache.get("/d")!.xattrs)).toEqual([["user.a", "alpha"]]);
    await settle();
    expect(p.answers.at(-1)).toEqual({ record: r });
    await p.close();
    await repo.close();
  });

  it("holds an attribute that comes before its entry: given to it when it is stored, answered then", async () => {
    const repo = await makeRepo();
    const p = makeParts(repo);
    const r = xattrRecord("/d", "user.early", "e");
    await p.xattrs.save(r);
    await settle();
    expect(p.answers).toEqual([]);
    const entry: Entry = { name: "d", info: info("d", "dir") };
    const early = p.xattrs.takeEarly("/d", entry);
    expect(shown(entry.xattrs)).toEqual([["user.early", "e"]]);
    expect(p.xattrs.takeEarly("/d", entry), "taken once").toBeUndefined();
    p.xattrs.answerEarly(early!);
    await settle();
    expect(p.answers).toEqual([{ record: r }]);
    await p.close();
    await repo.close();
  });

  it("a value too large or unreadable (IO) fails that attribute alone, reported and answered with the error", async () => {
    const repo = await makeRepo();
    const p = makeParts(repo);
    expect(p.entries.saveNow(dirRecord("/d"))).toBe(true);
    const big = xattrRecord("/d", "user.big", new Uint8Array(MAX_XATTR_VALUE + 1));
    const gone = xattrRecord("/d", "user.gone", "", new CofferError("IO", "vanished"));
    await p.xattrs.save(big);
    await p.xattrs.save(gone);
    expect(p.cache.get("/d")!.xattrs).toBeUndefined();
    expect(p.tally.summary.errors).toBe(2);
    expect(p.tally.errors.map(([path, m]) => [path, m])).toEqual([
      ["/d", `cannot read extended attribute user.big: value larger than ${MAX_XATTR_VALUE} bytes`],
      ["/d", "cannot read extended attribute user.gone: vanished"],
    ]);
    expect(p.events.filter((e) => e.type === "xattr-failed")).toMatchObject([
      { path: "/d", names: ["user.big"], errors: 1 },
      { path: "/d", names: ["user.gone"], errors: 2 },
    ]);
    await settle();
    expect(p.answers.slice(-2).map((a) => [a.record.xattrName, a.error !== undefined])).toEqual([["user.big", true], ["user.gone", true]]);
    await p.close();
    await repo.close();
  });

  it("an error that is not the source's (not IO) stops the run", async () => {
    const repo = await makeRepo();
    const p = makeParts(repo);
    await expect(p.xattrs.save(xattrRecord("/d", "user.a", "", new CofferError("CORRUPT", "bad")))).rejects.toMatchObject({ code: "CORRUPT" });
    await p.close();
    await repo.close();
  });

  it("at the end, attributes whose entry never came fail, one error per path naming them all", async () => {
    const repo = await makeRepo();
    const p = makeParts(repo);
    const a = xattrRecord("/lost", "user.a", "1");
    const b = xattrRecord("/lost", "user.b", "2");
    await p.xattrs.save(a);
    await p.xattrs.save(b);
    p.xattrs.end();
    const message = "extended attribute user.a, user.b came for an entry the source never sent";
    expect(p.tally.errors).toEqual([["/lost", message]]);
    expect(p.events).toMatchObject([{ type: "xattr-failed", path: "/lost", names: ["user.a", "user.b"], message }]);
    await settle();
    expect(p.answers).toEqual([
      { record: a, error: message },
      { record: b, error: message },
    ]);
    await p.close();
    await repo.close();
  });
});
