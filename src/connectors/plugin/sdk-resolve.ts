/**
 * Preloaded (`node --import`) by the plugin host when it starts a
 * JavaScript plugin: `import ... from "coffer/sdk"` then resolves to the SDK
 * of the coffer that runs the plugin, wherever the package is installed.
 * A plugin's own dependencies travel in its package (extra_files).
 */
import { registerHooks } from "node:module";

const SDK = new URL("../../sdk/index.js", import.meta.url).href;

registerHooks({
  resolve(specifier, context, next) {
    if (specifier === "coffer/sdk") return { url: SDK, shortCircuit: true, format: "module" };
    return next(specifier, context);
  },
});
