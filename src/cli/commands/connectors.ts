/** `coffer connectors`: the importers, exporters and stores there are, with their flags and options. */
import { Command } from "commander";
import { LocationFlag } from "../../connectors/flags.js";
import { describeParams } from "../../connectors/params.js";
import type { ConnectorKind } from "../../connectors/registry.js";
import type { Context } from "../context.js";
import { say } from "../format.js";

function flagNames(flags: number): string[] {
  return Object.entries(LocationFlag)
    .filter(([, bit]) => (flags & bit) !== 0)
    .map(([name]) => name.toLowerCase());
}

const KINDS: [ConnectorKind, string][] = [
  ["importer", "Importers (coffer backup LOCATION)"],
  ["exporter", "Exporters (coffer restore --to LOCATION)"],
  ["storage", "Stores (coffer at LOCATION ...)"],
];

function runConnectors(o: { json?: boolean }, ctx: Context): void {
  if (o.json) {
    const all = KINDS.flatMap(([kind]) =>
      ctx.registry.list(kind).map((d) => ({ kind, protocols: d.protocols, flags: flagNames(d.flags), provider: d.provider, description: d.description, params: d.params })),
    );
    ctx.stdout.write(`${JSON.stringify(all)}\n`);
    return;
  }
  for (const [kind, title] of KINDS) {
    say(ctx.stdout, `${title}:`);
    for (const d of ctx.registry.list(kind)) {
      const flags = flagNames(d.flags);
      say(ctx.stdout, `  ${d.protocols.map((p) => `${p}:`).join(" ")}  ${d.description}${flags.length ? ` [${flags.join(",")}]` : ""}${d.provider !== "builtin" ? ` (${d.provider})` : ""}`);
      for (const line of describeParams(d.params)) say(ctx.stdout, `      -o ${line}`);
    }
  }
}

export function connectorsCommand(ctx: () => Context): Command {
  return new Command("connectors")
    .description("list the importers, exporters and stores, with their options")
    .option("--json", "print JSON")
    .action((o: { json?: boolean }) => runConnectors(o, ctx()));
}
