/** `coffer pkg`: build, install, remove and list plugin packages (offline). */
import { Command } from "commander";
import { describeParams } from "../../connectors/params.js";
import { addPackage, listInstalled, pluginsDir, removePackage } from "../../pkg/installed.js";
import type { Manifest } from "../../pkg/manifest.js";
import { CofferError } from "../../util/errors.js";
import { type Context, userPath } from "../context.js";
import { say } from "../format.js";

function manifestJson(m: Manifest, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    name: m.name,
    displayName: m.displayName,
    description: m.description,
    version: m.version,
    apiVersion: m.apiVersion,
    license: m.license,
    homepage: m.homepage,
    tags: m.tags,
    connectors: m.connectors.map((c) => ({ type: c.type, protocols: c.protocols, locationFlags: c.locationFlags, executable: c.executable, args: c.args, parameters: c.parameters })),
    ...extra,
  };
}

function showManifest(m: Manifest, out: NodeJS.WritableStream, where: string): void {
  say(out, `${m.name} ${m.version}${m.displayName ? ` (${m.displayName})` : ""}`);
  if (m.description) say(out, `  ${m.description}`);
  say(out, `  api ${m.apiVersion}${m.license ? `, license ${m.license}` : ""}${m.homepage ? `, ${m.homepage}` : ""}`);
  say(out, `  ${where}`);
  for (const c of m.connectors) {
    say(out, `  ${c.type}: ${c.protocols.map((p) => `${p}:`).join(" ")}${c.locationFlags.length ? ` [${c.locationFlags.join(",")}]` : ""} -> ${c.executable}${c.args.length ? ` ${c.args.join(" ")}` : ""}`);
    for (const line of describeParams(c.parameters)) say(out, `      -o ${line}`);
  }
}

export function pkgCommand(ctx: () => Context): Command {
  const pkg = new Command("pkg").description("build, install and list plugin packages (no network needed)");
  pkg
    .command("create")
    .description("build a package file from a manifest (the files it names are taken relative to it)")
    .argument("<manifest>", "the manifest YAML")
    .option("--out <dir>", "where to write NAME_VERSION.ptar (default: the current directory)")
    .option("--json", "print JSON")
    .action(async (manifest: string, o: { out?: string; json?: boolean }) => {
      const c = ctx();
      const { createPackage } = await import("../../pkg/package.js");
      const { path, index } = await createPackage(userPath(c, manifest), userPath(c, o.out ?? "."));
      if (o.json) c.stdout.write(`${JSON.stringify({ path, name: index.manifest.name, version: index.manifest.version, files: index.files.length })}\n`);
      else say(c.stdout, path);
    });
  pkg
    .command("add")
    .description("verify a package file and install it")
    .argument("<file>", "a package built by `coffer pkg create`")
    .option("--force", "replace an installed package of the same name, or take protocols other packages provide")
    .action(async (file: string, o: { force?: boolean }) => {
      const c = ctx();
      const r = await addPackage(userPath(c, file), pluginsDir(c.env), c.registry, o);
      say(c.stdout, `installed ${r.manifest.name} ${r.manifest.version} in ${r.dir}${r.replaced.length ? ` (replacing ${r.replaced.join(", ")})` : ""}`);
    });
  pkg
    .command("rm")
    .description("remove an installed package")
    .argument("<name>")
    .action(async (name: string) => {
      const c = ctx();
      await removePackage(pluginsDir(c.env), name);
      say(c.stdout, `removed ${name}`);
    });
  pkg
    .command("ls")
    .description("list installed packages")
    .option("--json", "print JSON")
    .action(async (o: { json?: boolean }) => {
      const c = ctx();
      const all = await listInstalled(pluginsDir(c.env), (m) => say(c.stderr, `coffer: warning: ${m}`));
      if (o.json) {
        c.stdout.write(`${JSON.stringify(all.map((p) => manifestJson(p.manifest, { dir: p.dir })))}\n`);
        return;
      }
      for (const p of all) {
        const protos = p.manifest.connectors.map((x) => `${x.type} ${x.protocols.map((q) => `${q}:`).join(" ")}`).join("; ");
        say(c.stdout, `${p.manifest.name}  ${p.manifest.version}  ${protos}`);
      }
    });
  pkg
    .command("show")
    .description("show an installed package, or a package file")
    .argument("<name-or-file>")
    .option("--json", "print JSON")
    .action(async (what: string, o: { json?: boolean }) => {
      const c = ctx();
      const installed = (await listInstalled(pluginsDir(c.env))).find((p) => p.manifest.name === what);
      let m: Manifest;
      let where: string;
      if (installed) {
        m = installed.manifest;
        where = `installed in ${installed.dir}`;
      } else if (what.endsWith(".ptar")) {
        const { readPackage } = await import("../../pkg/package.js");
        m = (await readPackage(userPath(c, what))).manifest;
        where = `package file ${what}`;
      } else throw new CofferError("USAGE", `no installed package named ${what}`);
      if (o.json) c.stdout.write(`${JSON.stringify(manifestJson(m, { where }))}\n`);
      else showManifest(m, c.stdout, where);
    });
  return pkg;
}
