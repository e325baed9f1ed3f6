/** How plans are shown (src/cli/plan-output.ts): lines with the zone, groups, actions and reasons; the JSON of --json. */
import { describe, expect, it } from "vitest";
import { PLAN_JSON_VERSION, planJson, planLines, printPlan } from "../../src/cli/plan-output.js";
import type { Plan } from "../../src/snapshot/plan.js";

const entry = (n: number, action: "keep" | "remove", reasons: string[], group?: string) => ({
  id: String(n).repeat(64),
  timeNs: BigInt(Date.UTC(2026, 2, n, 23, 30)) * 1_000_000n,
  host: "h\x1b",
  source: "/src",
  tags: n === 1 ? ["a", "b"] : [],
  action,
  reasons,
  ...(group !== undefined ? { group } : {}),
});

const plan: Plan = { command: "prune", zone: "Europe/Paris", entries: [entry(1, "remove", ["not kept"], "host=h"), entry(2, "keep", ["daily 2026-03-03", "last 1"], "host=h")] };

describe("a plan", () => {
  it("prints the zone, each group once, a line per snapshot (times in the zone) and the summary", () => {
    expect(planLines(plan, { dryRun: true })).toEqual([
      "time zone: Europe/Paris",
      "group host=h:",
      "remove  11111111  2026-03-02 00:30:00  h\\033  /src  [a,b]  not kept",
      "keep    22222222  2026-03-03 00:30:00  h\\033  /src  daily 2026-03-03; last 1",
      "2 snapshots: 1 kept, 1 to remove (dry run: nothing removed)",
    ]);
    expect(planLines({ command: "rm", entries: [] }, { dryRun: false })).toEqual(["0 snapshots: 0 kept, 0 removed"]);
  });

  it("is printed as its lines, or as one line of JSON", () => {
    const text: string[] = [];
    const out = { write: (s: string) => text.push(s) } as unknown as NodeJS.WritableStream;
    printPlan(out, plan, { dryRun: true });
    expect(text.join("")).toBe(`${planLines(plan, { dryRun: true }).join("\n")}\n`);
    text.length = 0;
    printPlan(out, plan, { dryRun: true, json: true });
    expect(JSON.parse(text.join(""))).toEqual(JSON.parse(JSON.stringify(planJson(plan, { dryRun: true }))));
  });

  it("is the same as data with --json", () => {
    const j = JSON.parse(JSON.stringify(planJson(plan, { dryRun: false }))) as Record<string, unknown>;
    expect(j).toMatchObject({ version: PLAN_JSON_VERSION, command: "prune", zone: "Europe/Paris", dryRun: false, keep: 1, remove: 1 });
    expect((j.entries as unknown[])[1]).toEqual({
      id: "2".repeat(64),
      short: "22222222",
      time: "2026-03-02T23:30:00.000Z",
      timeNs: String(BigInt(Date.UTC(2026, 2, 2, 23, 30)) * 1_000_000n),
      host: "h\x1b",
      source: "/src",
      tags: [],
      action: "keep",
      reasons: ["daily 2026-03-03", "last 1"],
      group: "host=h",
    });
  });
});
