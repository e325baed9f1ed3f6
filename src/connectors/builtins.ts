/**
 * The connectors coffer ships, registered in a registry: fs (importer,
 * exporter, store), stdin/stdout, tar and tar+gz (importer, exporter), ptar
 * (a repository in one file), s3 (a repository in a bucket, on AWS or
 * any S3-compatible server), sftp (a repository on an SSH host) and memory
 * (a store for tests, shared within one process by name). Connectors with heavier dependencies are loaded
 * when they are used.
 */
import { LocationFlag } from "./flags.js";
import { FsExporter } from "./fs/exporter.js";
import { FsImporter } from "./fs/importer.js";
import { FsStore } from "./fs/store.js";
import { localPath } from "./location.js";
import { type MemoryBacking, MemoryStore } from "./memory/store.js";
import type { ParamSpec } from "./params.js";
import { Registry } from "./registry.js";
import { S3_EXPORTER_PARAMS, S3_IMPORTER_PARAMS } from "./s3/io-params.js";
import { S3_PARAMS, s3Settings } from "./s3/settings.js";
import { SFTP_PARAMS, sftpSettings } from "./sftp/params.js";
import { StdinImporter, StdoutExporter } from "./stdio/stdio.js";

const ONE_FILE_SYSTEM: ParamSpec = {
  name: "one_file_system",
  type: "bool",
  default: "false",
  description: "do not descend into directories on other filesystems",
};

const memoryBackings = new Map<string, MemoryBacking>();

function registerBuiltins(r: Registry): Registry {
  r.register({
    kind: "importer",
    protocols: ["fs"],
    flags: LocationFlag.LOCALFS,
    description: "a directory tree on this machine",
    params: [ONE_FILE_SYSTEM],
    provider: "builtin",
    make: (loc, cfg, o) =>
      new FsImporter(localPath(loc, o.cwd), {
        excludes: o.excludes,
        noXattr: o.noXattr,
        oneFileSystem: cfg.one_file_system === "true",
        onWarning: o.onWarning,
      }),
  });
  r.register({
    kind: "exporter",
    protocols: ["fs"],
    flags: LocationFlag.LOCALFS | LocationFlag.EXPORTXATTR,
    description: "a directory on this machine",
    params: [
      { name: "owners", type: "string", default: "auto", inclusion: ["auto", "true", "false"], description: "restore owners (auto: when running as root)" },
    ],
    provider: "builtin",
    make: (loc, cfg, o) =>
      new FsExporter(localPath(loc, o.cwd), { owners: cfg.owners === "auto" ? undefined : cfg.owners === "true", onWarning: o.onWarning }),
  });
  r.register({
    kind: "storage",
    protocols: ["fs"],
    flags: LocationFlag.LOCALFS,
    description: "a repository directory on this machine",
    params: [],
    provider: "builtin",
    make: (loc, _cfg, o) => new FsStore(localPath(loc, o.cwd), { readOnly: o.readOnly }),
  });
  r.register({
    kind: "storage",
    protocols: ["ptar"],
    flags: LocationFlag.FILE,
    description: "a repository in one file (written atomically at the end of each command)",
    params: [],
    provider: "builtin",
    make: async (loc, _cfg, o) => new (await import("./ptar/store.js")).PtarStore(localPath(loc, o.cwd), { readOnly: o.readOnly }),
  });
  r.register({
    kind: "storage",
    protocols: ["s3", "s3+http"],
    flags: 0,
    description: "a repository in an S3 bucket: s3://[ENDPOINT/]BUCKET[/PREFIX], or s3+http:// for a plain-HTTP endpoint",
    params: S3_PARAMS,
    provider: "builtin",
    make: async (loc, cfg, o) => {
      const settings = s3Settings(loc, cfg, o.env ?? {});
      return new (await import("./s3/store.js")).S3Store(settings, { readOnly: o.readOnly, env: o.env });
    },
  });
  r.register({
    kind: "importer",
    protocols: ["s3", "s3+http"],
    flags: 0,
    description: "every object under a prefix of an S3 bucket, as files: s3://[ENDPOINT/]BUCKET[/PREFIX]",
    params: S3_IMPORTER_PARAMS,
    provider: "builtin",
    make: async (loc, cfg, o) => {
      const settings = s3Settings(loc, cfg, o.env ?? {});
      return new (await import("./s3/importer.js")).S3Importer(settings, { env: o.env, excludes: o.excludes, onWarning: o.onWarning });
    },
  });
  r.register({
    kind: "exporter",
    protocols: ["s3", "s3+http"],
    flags: 0,
    description: "each file as an object under a prefix of an S3 bucket: s3://[ENDPOINT/]BUCKET[/PREFIX]",
    params: S3_EXPORTER_PARAMS,
    provider: "builtin",
    make: async (loc, cfg, o) => {
      const settings = s3Settings(loc, cfg, o.env ?? {});
      return new (await import("./s3/exporter.js")).S3Exporter(settings, { env: o.env });
    },
  });
  r.register({
    kind: "storage",
    protocols: ["sftp"],
    flags: 0,
    description: "a repository on an SSH host: sftp://[USER@]HOST[:PORT]/PATH",
    params: SFTP_PARAMS,
    provider: "builtin",
    make: async (loc, cfg, o) => new (await import("./sftp/store.js")).SftpStore(sftpSettings(loc, cfg, o), { readOnly: o.readOnly }),
  });
  r.register({
    kind: "storage",
    protocols: ["memory"],
    flags: 0,
    description: "a repository in this process's memory (for tests)",
    params: [],
    provider: "builtin",
    make: (loc, _cfg, o) => {
      let backing = memoryBackings.get(loc.rest);
      if (!backing) memoryBackings.set(loc.rest, (backing = MemoryStore.emptyBacking()));
      return new MemoryStore({ backing, name: loc.rest, readOnly: o.readOnly });
    },
  });
  r.register({
    kind: "importer",
    protocols: ["stdin"],
    flags: LocationFlag.STREAM,
    description: "standard input, stored as one file: stdin:NAME",
    params: [],
    provider: "builtin",
    make: (loc, _cfg, o) => new StdinImporter(loc.rest, o.stdin),
  });
  r.register({
    kind: "exporter",
    protocols: ["stdout"],
    flags: LocationFlag.STREAM,
    description: "standard output: the content of each file, one after the other",
    params: [],
    provider: "builtin",
    make: (_loc, _cfg, o) => new StdoutExporter(o.stdout),
  });
  for (const proto of ["tar", "tar+gz"]) {
    const gzip = proto === "tar+gz";
    const what = gzip ? "a gzip-compressed tar archive" : "a tar archive";
    r.register({
      kind: "importer",
      protocols: [proto],
      flags: LocationFlag.FILE,
      description: `the contents of ${what}: ${proto}:FILE, or ${proto}:- to read it from stdin (then a STREAM source)`,
      params: [],
      provider: "builtin",
      make: async (loc, _cfg, o) =>
        new (await import("./tar/importer.js")).TarImporter(localPath(loc, o.cwd), { gzip, stdin: o.stdin, onWarning: o.onWarning, excludes: o.excludes, noXattr: o.noXattr, tmpDir: o.tmpDir }),
    });
    r.register({
      kind: "exporter",
      protocols: [proto],
      flags: LocationFlag.FILE | LocationFlag.EXPORTXATTR,
      description: `${what} written atomically: ${proto}:FILE, or ${proto}:- for stdout`,
      params: [],
      provider: "builtin",
      make: async (loc, _cfg, o) => new (await import("./tar/exporter.js")).TarExporter(localPath(loc, o.cwd), { gzip, stdout: o.stdout, onWarning: o.onWarning, overwrite: o.overwrite === true }),
    });
  }
  return r;
}

/** A registry holding the built-in connectors. */
export function builtinRegistry(): Registry {
  return registerBuiltins(new Registry());
}
