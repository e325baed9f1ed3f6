#!/usr/bin/env node
/**
 * Example importer plugin written with coffer's SDK: imports a directory
 * tree (`plugfs:/path`) with coffer's built-in fs importer.
 */
import { entrypointImporter, FsImporter } from "coffer/sdk";
import { plugfsPath, withType } from "./common.js";

await entrypointImporter(process.argv.slice(2), {
  params: [{ name: "one_file_system", type: "bool", default: "false", description: "do not descend into directories on other filesystems" }],
  async make(proto, config, opts) {
    const imp = new FsImporter(plugfsPath(config, opts.cwd), {
      excludes: opts.excludes,
      noXattr: opts.noXattr,
      oneFileSystem: config.one_file_system === "true",
      onWarning: opts.onWarning,
    });
    return withType(imp, proto);
  },
});
