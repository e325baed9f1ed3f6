/**
 * A restore worker thread (started by pool.ts): writes the files of each
 * batch it is sent with a FileWriter and answers with one result per
 * file, errors in the form that keeps their code and data across
 * postMessage (worker-errors.ts).
 */
import { parentPort, workerData } from "node:worker_threads";
import { Codec } from "../../repository/codec.js";
import { toWorkerError } from "../worker-errors.js";
import { FileWriter } from "./file-writer.js";
import type { FileJob, FileResult, RestoreInit } from "./protocol.js";

const init = workerData as RestoreInit;
const writer = new FileWriter(new Codec({ keys: init.keys, encrypted: init.encrypted, compression: init.compression }));
const port = parentPort!;

port.on("message", (jobs: FileJob[]) => {
  const out: FileResult[] = [];
  for (const job of jobs) {
    try {
      writer.write(job);
      out.push({ id: job.id });
    } catch (e) {
      out.push({ id: job.id, error: toWorkerError(e) });
    }
  }
  port.postMessage(out);
});
port.postMessage([]); // ready
