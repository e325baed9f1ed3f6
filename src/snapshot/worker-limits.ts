/**
 * Heap limits of the backup and restore worker threads. A small young
 * generation makes V8 collect often, which frees the (external) buffers of
 * chunks a worker is done with promptly instead of letting them pile up; a
 * worker keeps almost nothing alive (chunk bytes live outside the V8 heap),
 * so a small old generation only stops the heap from growing needlessly
 * (measured: restore of /usr/share with 4 workers peaks at 485 MiB instead
 * of 720 MiB).
 */
export const WORKER_LIMITS = { maxYoungGenerationSizeMb: 4, maxOldGenerationSizeMb: 48 };
