/**
 * The built-in in-memory Store (type "memory"), for tests and throwaway
 * repositories. Same semantics as the fs store: bytes are copied in and out
 * (a caller can never mutate what is stored), puts are all-or-nothing,
 * read-only instances refuse writes. Several instances can share one
 * MemoryBacking, e.g. a writer and a read-only view of the same repository.
 */
import { NotFoundError, throwIfAborted } from "../../util/errors.js";
import { type Resource, resourceName } from "../flags.js";
import { equalBytes } from "../../util/hex.js";
import { checkRange, checkResource, collectPut, configChanged, macHex, macsOf, noRepository, rangeWithin, refuseIfReadOnly, repositoryExists, storeMode } from "../store-checks.js";
import type { CallOptions, Mac, Range, Store } from "../store.js";

/** What a MemoryStore keeps; pass the same object to several stores to share it. */
export interface MemoryBacking {
  config: Uint8Array | undefined;
  /** Objects per resource, keyed by the lower-case hex of their MAC. */
  readonly objects: Map<Resource, Map<string, Uint8Array>>;
}

export interface MemoryStoreOptions {
  /** Shared state; a fresh empty one when omitted. */
  backing?: MemoryBacking | undefined;
  /** Refuse put(), delete() and create() with READ_ONLY. */
  readOnly?: boolean | undefined;
  /** Shown as the store's root. */
  name?: string | undefined;
}

let counter = 0;

export class MemoryStore implements Store {
  readonly origin = "memory";
  readonly type = "memory";
  readonly root: string;
  readonly flags = 0;
  readonly backing: MemoryBacking;
  readonly #readOnly: boolean;

  constructor(opts: MemoryStoreOptions = {}) {
    this.backing = opts.backing ?? MemoryStore.emptyBacking();
    this.#readOnly = opts.readOnly === true;
    this.root = opts.name ?? `memory-${++counter}`;
  }

  static emptyBacking(): MemoryBacking {
    return { config: undefined, objects: new Map() };
  }

  /** Another store on this one's state (e.g. `store.view({ readOnly: true })`). */
  view(opts: Omit<MemoryStoreOptions, "backing"> = {}): MemoryStore {
    return new MemoryStore({ name: this.root, ...opts, backing: this.backing });
  }

  async create(config: Uint8Array, opts: CallOptions = {}): Promise<void> {
    throwIfAborted(opts.signal);
    this.#checkWritable("create");
    if (this.backing.config !== undefined) throw repositoryExists(this.root);
    this.backing.config = copy(config);
  }

  async open(opts: CallOptions = {}): Promise<Uint8Array> {
    throwIfAborted(opts.signal);
    const config = this.backing.config;
    if (config === undefined) throw noRepository(this.root);
    return copy(config);
  }

  async replaceConfig(config: Uint8Array, expected: Uint8Array, opts: CallOptions = {}): Promise<void> {
    throwIfAborted(opts.signal);
    this.#checkWritable("replace the configuration");
    const current = this.backing.config;
    if (current === undefined) throw noRepository(this.root);
    if (!equalBytes(current, expected)) throw configChanged(this.root);
    this.backing.config = copy(config);
  }

  async ping(opts: CallOptions = {}): Promise<void> {
    throwIfAborted(opts.signal);
  }

  async mode(opts: CallOptions = {}): Promise<number> {
    throwIfAborted(opts.signal);
    return storeMode(this.#readOnly);
  }

  async size(opts: CallOptions = {}): Promise<number> {
    throwIfAborted(opts.signal);
    let total = this.backing.config?.byteLength ?? 0;
    for (const objects of this.backing.objects.values()) {
      for (const data of objects.values()) total += data.byteLength;
    }
    return total;
  }

  async *list(resource: Resource, opts: CallOptions = {}): AsyncIterable<Mac> {
    throwIfAborted(opts.signal);
    // A snapshot: puts during the walk don't disturb it.
    yield* macsOf([...this.#objects(resource).keys()], opts.signal);
  }

  async put(resource: Resource, mac: Mac, data: Uint8Array | AsyncIterable<Uint8Array>, opts: CallOptions = {}): Promise<number> {
    const { signal } = opts;
    throwIfAborted(signal);
    this.#checkWritable("put");
    const key = macHex(mac);
    const objects = this.#objects(resource);
    const stored = await collectPut(data, signal);
    throwIfAborted(signal);
    objects.set(key, stored);
    return stored.byteLength;
  }

  async get(resource: Resource, mac: Mac, range?: Range, opts: CallOptions = {}): Promise<Uint8Array> {
    throwIfAborted(opts.signal);
    if (range !== undefined) checkRange(range);
    const key = macHex(mac);
    const what = `${resourceName(resource)} ${key}`;
    const data = this.#objects(resource).get(key);
    if (data === undefined) throw new NotFoundError(what, { resource, mac: key });
    if (range === undefined) return copy(data);
    const { offset, length } = rangeWithin(range, data.byteLength, what, { resource, mac: key });
    return data.slice(offset, offset + length); // data is a plain Uint8Array: slice copies
  }

  async delete(resource: Resource, mac: Mac, opts: CallOptions = {}): Promise<void> {
    throwIfAborted(opts.signal);
    this.#checkWritable("delete");
    const key = macHex(mac);
    if (!this.#objects(resource).delete(key)) {
      throw new NotFoundError(`${resourceName(resource)} ${key}`, { resource, mac: key });
    }
  }

  async close(): Promise<void> {}

  #checkWritable(op: string): void {
    refuseIfReadOnly(this.#readOnly, "memory", this.root, op);
  }

  #objects(resource: Resource): Map<string, Uint8Array> {
    checkResource(resource);
    let objects = this.backing.objects.get(resource);
    if (objects === undefined) {
      objects = new Map();
      this.backing.objects.set(resource, objects);
    }
    return objects;
  }
}

/** A fresh plain Uint8Array (Buffer#slice would share memory). */
function copy(b: Uint8Array): Uint8Array {
  return new Uint8Array(b);
}
