/**
 * The layer rules of src/ (docs/ARCHITECTURE.md) are enforced by the linter:
 * a fixture importing upwards, linted as if it lived in each lower layer,
 * fails `no-restricted-imports` naming both layers; the same imports from a
 * layer allowed to make them pass.
 */
import { readFileSync } from "node:fs";
import * as path from "node:path";
import { ESLint } from "eslint";
import { describe, expect, it } from "vitest";
import { PROJECT_ROOT } from "../helpers/cli.js";

const FIXTURE = readFileSync(path.join(PROJECT_ROOT, "test", "fixtures", "layers", "violations.ts.txt"), "utf8");

async function restricted(file: string): Promise<string[]> {
  const eslint = new ESLint({ cwd: PROJECT_ROOT });
  const [r] = await eslint.lintText(FIXTURE, { filePath: path.join(PROJECT_ROOT, file) });
  return r!.messages.filter((m) => m.ruleId === "no-restricted-imports").map((m) => m.message);
}

describe("layer rules", () => {
  it("an upward import fails the lint, naming both layers", async () => {
    for (const [file, layer] of [
      ["src/util/example.ts", "util"],
      ["src/connectors/example.ts", "connectors"],
      ["src/connectors/fs/example.ts", "connectors"],
      ["src/connectors/ptar/example.ts", "connectors"],
      ["src/connectors/memory/example.ts", "connectors"],
      ["src/connectors/tar/example.ts", "connectors"],
      ["src/pkg/example.ts", "pkg"],
    ] as const) {
      const messages = await restricted(file);
      expect(messages.length, `${file}: ${messages.join("; ")}`).toBeGreaterThanOrEqual(1);
      expect(messages.join("\n")).toContain(`src/${layer} may not import src/`);
    }
    // The repository layer may not reach up into snapshot.
    expect((await restricted("src/repository/example.ts")).join("\n")).toContain("src/repository may not import src/snapshot");
  }, 60_000);

  it("the same imports from the CLI, which may import every layer, pass", async () => {
    expect(await restricted("src/cli/commands/example.ts")).toEqual([]);
  }, 60_000);
});
