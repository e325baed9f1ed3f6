import js from "@eslint/js";
import tseslint from "typescript-eslint";

/** One no-restricted-imports rule per layer of src/: the layers it must not import. */
function layerRules(forbidden) {
  return Object.entries(forbidden).map(([layer, others]) => ({
    files: [`src/${layer}/**/*.ts`],
    rules: {
      "no-restricted-imports": [
        "error",
        {
          patterns: others.map((o) => ({
            group: [`**/${o}/**`, `../${o}/*`, `../../${o}/*`],
            message: `src/${layer} may not import src/${o} (see the layer rules in src/${layer}/README.md and docs/ARCHITECTURE.md)`,
          })),
        },
      ],
    },
  }));
}

export default tseslint.config(
  { ignores: ["dist/**", "node_modules/**", "coverage/**"] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      "no-constant-condition": ["error", { checkLoops: false }],
    },
  },
  // The layers (docs/ARCHITECTURE.md): cli -> snapshot -> repository -> connectors -> util, with pkg and sdk
  // beside them. Each layer may import only those below it; a wrong import fails `npm run lint`.
  ...layerRules({
    util: ["connectors", "repository", "snapshot", "cli", "pkg", "sdk"],
    connectors: ["repository", "snapshot", "cli", "pkg", "sdk"],
    repository: ["snapshot", "cli", "pkg", "sdk"],
    snapshot: ["cli", "pkg", "sdk"],
    pkg: ["repository", "snapshot", "cli", "sdk"],
    sdk: ["repository", "snapshot", "cli", "pkg"],
  }),
  {
    files: ["bin/**/*.js", "bench/**/*.js"],
    languageOptions: { globals: { process: "readonly", console: "readonly" } },
  },
);
