#!/usr/bin/env node
// Launcher: coffer needs Node 24 (native zstd and argon2id).
import { fileURLToPath } from "node:url";

const [major] = process.versions.node.split(".").map(Number);
if (major < 24) {
  process.stderr.write(`coffer: Node.js >= 24 is required (this is ${process.version}); run it through npm/npx so the project's Node is used\n`);
  process.exit(1);
}

// Node flags and environment that coffer runs with (see src/cli/launch.ts).
// V8 takes the flags only at start, so the launcher replaces itself (same
// process, same PID) with a Node that has them, unless that would change
// the bytes of a variable that is not valid UTF-8 (reexecKeepsEnvironment).
const { V8_FLAGS, launchEnv, reexecKeepsEnvironment } = await import("../dist/cli/launch.js");
if (!process.execArgv.includes(V8_FLAGS[0]) && typeof process.execve === "function" && reexecKeepsEnvironment(process.env)) {
  try {
    process.execve(process.execPath, [process.execPath, ...V8_FLAGS, ...process.execArgv, fileURLToPath(import.meta.url), ...process.argv.slice(2)], launchEnv(process.env));
  } catch {
    // carry on with the default heap
  }
}

const { main } = await import("../dist/cli/main.js");
await main(process.argv.slice(2));
