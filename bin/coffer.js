#!/usr/bin/env node
// Launcher: coffer needs Node 24 (native zstd and argon2id).
import { fileURLToPath } from "node:url";

const [major] = process.versions.node.split(".").map(Number);
if (major < 24) {
  process.stderr.write(`coffer: Node.js >= 24 is required (this is ${process.version}); run it through npm/npx so the project's Node is used\n`);
  process.exit(1);
}

// A small young generation: coffer churns through short-lived buffers and
// records, and V8's default lets the heap grow by ~150 MiB for nothing
// (measured on /usr/share: a no-change backup peaks at 190 MiB instead of
// 360 MiB, in the same time). V8 takes the flag only at start, so the
// launcher replaces itself (same process, same PID) with a Node that has it.
// --expose-gc lets the worker threads collect after each few dozen MiB of
// chunk buffers (they live outside the V8 heap, which does not see them pile up).
const V8_FLAGS = ["--max-semi-space-size=4", "--expose-gc"];
if (!process.execArgv.includes(V8_FLAGS[0]) && typeof process.execve === "function") {
  try {
    process.execve(process.execPath, [process.execPath, ...V8_FLAGS, ...process.execArgv, fileURLToPath(import.meta.url), ...process.argv.slice(2)], process.env);
  } catch {
    // carry on with the default heap
  }
}

const { main } = await import("../dist/cli/main.js");
await main(process.argv.slice(2));
