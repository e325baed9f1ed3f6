/**
 * Heap limits of the backup and restore worker threads. A small young
 * generation makes V8 collect often, which frees the (external) buffers of
 * chunks a worker is done with promptly instead of letting them pile up.
 */
export const WORKER_LIMITS = { maxYoungGenerationSizeMb: 4 };
