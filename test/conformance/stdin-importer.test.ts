/**
 * The importer kit on StdinImporter fed by a Readable: a STREAM importer
 * yielding "/" and one file, whose content is what was piped in.
 */
import { randomBytes } from "node:crypto";
import { Readable } from "node:stream";
import { StdinImporter } from "../../src/connectors/stdio/stdio.js";
import { importerKit } from "../../src/sdk/kits/index.js";
import type { ImporterFixture } from "../../src/sdk/kits/index.js";
import { vitestHarness } from "./harness.js";

/** A byte stream (not object mode) delivering `content` in uneven pieces. */
function piped(content: Buffer): Readable {
  const pieces: Buffer[] = [];
  for (let at = 0, n = 1; at < content.byteLength; at += n, n = n * 7 + 1000) pieces.push(content.subarray(at, at + n));
  return Readable.from(pieces, { objectMode: false });
}

/** stdin:NAME yields "/", a directory record for each parent in NAME, then the file. */
function stdin(name: string, pathname: string, content: Buffer): () => Promise<ImporterFixture> {
  return async () => {
    const input = piped(content);
    return {
      importer: new StdinImporter(name, input),
      expected: [
        ...parents(pathname).map((p) => ({ pathname: p, kind: "dir" as const })),
        { pathname, kind: "file", content },
      ],
      cleanup: async () => {
        input.destroy();
      },
    };
  };
}

/** "/", "/a", "/a/b" for "/a/b/c". */
function parents(pathname: string): string[] {
  const parts = pathname.split("/").slice(1, -1);
  return ["/", ...parts.map((_, i) => `/${parts.slice(0, i + 1).join("/")}`)];
}

const h = vitestHarness();
importerKit(h, "stdin", stdin("dump.sql", "/dump.sql", Buffer.concat([randomBytes(3 << 20), Buffer.from("-- end\n")])));
importerKit(h, "stdin (nested name)", stdin("backups//2024/db.sql", "/backups/2024/db.sql", randomBytes(70_000)));
importerKit(h, "stdin (nothing piped in)", stdin("empty", "/empty", Buffer.alloc(0)));
