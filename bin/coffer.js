#!/usr/bin/env node
// Launcher: coffer needs Node 24 (native zstd and argon2id).
const [major] = process.versions.node.split(".").map(Number);
if (major < 24) {
  process.stderr.write(`coffer: Node.js >= 24 is required (this is ${process.version}); run it through npm/npx so the project's Node is used\n`);
  process.exit(1);
}
const { main } = await import("../dist/cli/main.js");
await main(process.argv.slice(2));
