#!/usr/bin/env node
/**
 * Example exporter plugin written with coffer's SDK: restores into a
 * directory (`plugfs:/path`) with coffer's built-in fs exporter.
 */
import { entrypointExporter, FsExporter } from "coffer/sdk";
import { plugfsPath, withType } from "./common.js";

await entrypointExporter(process.argv.slice(2), {
  params: [{ name: "owners", type: "string", default: "auto", inclusion: ["auto", "true", "false"], description: "restore owners (auto: when running as root)" }],
  async make(proto, config, opts) {
    const exp = new FsExporter(plugfsPath(config, opts.cwd), {
      owners: config.owners === "auto" ? undefined : config.owners === "true",
      onWarning: opts.onWarning,
    });
    return withType(exp, proto);
  },
});
