/**
 * The exporter kit on StdoutExporter, writing to a collecting Writable:
 * a content-only exporter, so readBack() gives every byte written and the
 * kit compares it with the content of the files exported, in order.
 */
import { Writable } from "node:stream";
import { StdoutExporter } from "../../src/connectors/stdio/stdio.js";
import { exporterKit } from "../../src/sdk/kits/index.js";
import { vitestHarness } from "./harness.js";

/** Keeps a copy of every chunk (the exporter's buffers may be reused), answering each write a turn later. */
class Collector extends Writable {
  readonly chunks: Buffer[] = [];
  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.chunks.push(Buffer.from(chunk));
    setImmediate(callback);
  }
}

const h = vitestHarness();

exporterKit(h, "stdout", async () => {
  const out = new Collector();
  return {
    exporter: new StdoutExporter(out),
    readBack: async () => ({ concatenated: new Uint8Array(Buffer.concat(out.chunks)) }),
    cleanup: async () => {
      out.destroy();
    },
  };
});
