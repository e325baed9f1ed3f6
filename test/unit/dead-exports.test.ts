/**
 * scripts/dead-exports.ts: coffer has no export that nothing uses (so a new
 * dead export fails the suite), and on a small project of its own layout
 * the finder tells each kind of use from a dead export.
 */
import { execFile } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { promisify } from "node:util";
import { afterEach, describe, expect, it } from "vitest";
import { findDeadExports } from "../../scripts/dead-exports.ts";
import { PROJECT_ROOT } from "../helpers/cli.js";

const run = promisify(execFile);
const SCRIPT = path.join(PROJECT_ROOT, "scripts", "dead-exports.ts");

let dir: string | undefined;
afterEach(() => {
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  dir = undefined;
});

function project(files: Record<string, string>): string {
  dir = mkdtempSync(path.join(tmpdir(), "coffer-dead-exports-"));
  for (const [name, text] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    writeFileSync(path.join(dir, name), text);
  }
  return dir;
}

describe("dead exports", () => {
  it("coffer has none: the script, run by Node, prints nothing and exits 0", async () => {
    const r = await run(process.execPath, [SCRIPT], { cwd: PROJECT_ROOT }).catch((e: { stdout: string; code: number }) => e);
    expect(r.stdout).toBe("");
    expect("code" in r ? r.code : 0).toBe(0);
  }, 120_000);

  it("finds the exports nothing uses, and follows every kind of use", () => {
    const root = project({
      "package.json": JSON.stringify({ type: "module", exports: { "./sdk": { types: "./dist/sdk/index.d.ts", default: "./dist/sdk/index.js" } } }),
      "src/sdk/index.ts": 'export { published } from "../lib/a.js";\nexport * from "./kit.js";\n',
      "src/sdk/kit.ts": "export function kitFunction(): void {}\n",
      "src/lib/a.ts": [
        "export function published(): void {}",
        "export function unused(): void {}",
        "export const internal = 1;",
        "export function usesInternal(): number { return internal; }",
        "export interface Options { size: number }",
        "export interface BodyOnly { size: number }",
        "export function withOptions(o: Options): number { const b: BodyOnly = o; return b.size; }",
        "export function viaNamespace(): void {}",
        "export function viaShorthand(): void {}",
        "",
      ].join("\n"),
      "src/lib/barrel.ts": 'export { published as again, viaShorthand } from "./a.js";\n',
      "src/lib/b.ts": [
        'import { withOptions as w } from "./a.js";',
        'import * as A from "./a.js";',
        'import { viaShorthand } from "./barrel.js";',
        "w({ size: 1 });",
        "A.viaNamespace();",
        "export const table = { viaShorthand };",
        'const { viaDynamic } = await import("./c.js");',
        "viaDynamic();",
        "",
      ].join("\n"),
      "src/lib/c.ts": "export function viaDynamic(): void {}\nexport function notDynamic(): void {}\n",
      "src/lib/d.ts": "export const viaDist = 1;\nexport const notViaDist = 2;\n",
      "src/lib/e.ts": "export const viaUrl = 1;\nexport const notViaUrl = 2;\n",
      "src/plugins/p/plugin.ts": "export function plugin(): void {}\n",
      "src/cli/main.ts": "export function main(): void {}\n",
      "bin/tool.js": 'const { viaDist } = await import("../dist/lib/d.js");\nconsole.log(viaDist);\n',
      "test/fixtures/child.mjs": 'const dist = (p) => import(new URL(`../../dist/${p}`, import.meta.url).href);\nconst { viaUrl } = await dist("lib/e.js");\nconsole.log(viaUrl);\n',
      "test/helpers/helper.ts": "export function helperUsed(): void {}\nexport function helperDead(): void {}\n",
      "test/unit/a.test.ts": 'import { usesInternal } from "../../src/lib/a.js";\nimport { helperUsed } from "../helpers/helper.js";\nimport { table } from "../../src/lib/b.js";\nusesInternal();\nhelperUsed();\nconsole.log(table);\n',
    });
    const found = findDeadExports(root).map((d) => `${d.file} ${d.name}${d.usedInModule ? " (own module)" : ""}`);
    expect(found).toEqual([
      "src/lib/a.ts unused",
      "src/lib/a.ts internal (own module)",
      "src/lib/a.ts BodyOnly (own module)",
      "src/lib/barrel.ts again",
      "src/lib/c.ts notDynamic",
      "src/lib/d.ts notViaDist",
      "src/lib/e.ts notViaUrl",
      "test/helpers/helper.ts helperDead",
    ]);
  }, 60_000);
});
