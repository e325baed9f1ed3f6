/* global process */
/**
 * Part of `npm run build`: puts each manifest of manifests/NAME.yaml beside
 * its compiled plugin, as dist/plugins/NAME/manifest.yaml, and marks the
 * plugin's executables executable, so that `coffer pkg create
 * dist/plugins/NAME/manifest.yaml` packages it.
 */
import { chmodSync, copyFileSync, existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

let failed = false;
for (const file of readdirSync("manifests").filter((f) => f.endsWith(".yaml")).sort()) {
  const name = file.slice(0, -".yaml".length);
  const dir = join("dist", "plugins", name);
  if (!existsSync(dir)) {
    process.stderr.write(`stage-plugins: ${dir} was not built (is there a src/plugins/${name}?)\n`);
    failed = true;
    continue;
  }
  copyFileSync(join("manifests", file), join(dir, "manifest.yaml"));
  for (const m of readFileSync(join("manifests", file), "utf8").matchAll(/^\s*executable:\s*(\S+)\s*$/gm)) {
    const exe = join(dir, m[1]);
    if (!existsSync(exe)) {
      process.stderr.write(`stage-plugins: ${file} names ${m[1]}, which is not in ${dir}\n`);
      failed = true;
    } else chmodSync(exe, 0o755);
  }
}
process.exit(failed ? 1 : 0);
