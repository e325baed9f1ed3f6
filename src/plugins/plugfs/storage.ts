#!/usr/bin/env node
/**
 * Example storage plugin written with coffer's SDK: a repository in a
 * directory (`plugfs:/path`) kept by coffer's built-in fs store.
 */
import { entrypointStorage, FsStore } from "coffer/sdk";
import { plugfsPath, withType } from "./common.js";

await entrypointStorage(process.argv.slice(2), {
  params: [{ name: "read_only", type: "bool", default: "false", description: "open the repository for reading only" }],
  async make(proto, config, opts) {
    return withType(new FsStore(plugfsPath(config, opts.cwd), { readOnly: config.read_only === "true" }), proto);
  },
});
