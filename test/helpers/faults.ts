/**
 * Faults: Store decorators for tests. Each wraps ANY Store (memory, fs,
 * ptar, a plugin's) and is itself a Store, so they compose, outermost
 * first seeing a call first:
 *
 *   const mem = new MemoryStore();
 *   const log = recording(delayed(failing(mem, { nth: 3, op: "put" }), gate()));
 *
 * - recording(store): logs every call (op, resource, MAC in hex, range,
 *   bytes) as it starts and as it is done or failed: write orders, counts of
 *   operations, what a command touched.
 * - failing(store, rule): the Nth call matching the rule (and the `times - 1`
 *   after it) fails with the rule's error (faults.io, faults.noSpace,
 *   faults.notFound... or your own) before reaching the store, or, with
 *   `after`, once the store has done it (a reply lost on the way).
 * - cutShort(store, rule): the Nth matching put (or staged object) hands
 *   the store only part of its bytes, then fails: an atomic store must then
 *   hold nothing under that name.
 * - delayed(store, wait, sel): matching calls first wait for a Gate (see
 *   gate(): held until the test opens it), a function's promise, or (last
 *   resort: no assertion may depend on it) some milliseconds.
 * - eventuallyConsistent(store, opts): list() leaves out what was put since
 *   the last settle() (and, optionally, still shows what was deleted), and
 *   gives each listing in an order shuffled from a seed: the same seed, the
 *   same orders.
 *
 * Every decorator has stage() (its StagedPut's write, commit and abort are
 * calls of their own) and sync() exactly when the store it wraps has them,
 * and never localPath(): readers go through the decorators, not around them.
 * A listing is one call: the decorator reads the inner listing whole, then
 * yields it (checking the caller's signal between MACs).
 */
import { type Resource, resourceName } from "../../src/connectors/flags.js";
import type { CallOptions, Mac, Range, StagedPut, StageOptions, Store } from "../../src/connectors/store.js";
import { CofferError, NotFoundError, throwIfAborted } from "../../src/util/errors.js";
import { fromHex, toHex } from "../../src/util/hex.js";

// ------------------------------------------------------------ calls ---

/** The Store methods, and the three of a StagedPut (`write`, `commit`, `abort`). */
export type Op = "create" | "open" | "ping" | "mode" | "size" | "list" | "put" | "get" | "delete" | "sync" | "close" | "stage" | "write" | "commit" | "abort";

/** Calls that reach the stored objects (all but create/open/ping/mode/size/close): what a command's "Nth store operation" counts. */
export const OBJECT_OPS: readonly Op[] = ["list", "get", "put", "delete", "stage", "write", "commit", "abort", "sync"];

/** One call on a store, as decorators see it. */
export interface Call {
  readonly op: Op;
  readonly resource?: Resource;
  /** The MAC in lower-case hex (put, get, delete, commit). */
  readonly mac?: string;
  readonly range?: Range;
  /** Bytes handed over: a put of a Uint8Array, a staged write. */
  readonly bytes?: number;
  /** Which stage() call (1, 2, ... per decorator) a write, commit or abort belongs to. */
  readonly staged?: number;
  /** stage(): the caller's `direct` hint (StageOptions). */
  readonly direct?: boolean;
}

/** Which calls a rule applies to: all of `op`, `resource` and `when` that are given must hold. */
export interface Selector {
  op?: Op | readonly Op[];
  resource?: Resource;
  when?: (c: Call) => boolean;
}

function matches(sel: Selector, c: Call): boolean {
  if (sel.op !== undefined && !(typeof sel.op === "string" ? [sel.op] : sel.op).includes(c.op)) return false;
  if (sel.resource !== undefined && c.resource !== sel.resource) return false;
  return sel.when === undefined || sel.when(c);
}

/** "put packfile 1a2b3c4d5e6f" */
function describeCall(c: Call): string {
  const parts: string[] = [c.op];
  if (c.resource !== undefined) parts.push(resourceName(c.resource));
  if (c.mac !== undefined) parts.push(c.mac.slice(0, 12));
  if (c.staged !== undefined) parts.push(`#${c.staged}`);
  if (c.range !== undefined) parts.push(`${c.range.offset}+${c.range.length}`);
  return parts.join(" ");
}

// ----------------------------------------------------------- errors ---

/** What a failing decorator throws: an error, or one made for the call. */
export type Fault = Error | ((c: Call) => Error);

/** Ready-made faults, shaped as the built-in stores' own errors. */
export const faults = {
  /** IO, errno EIO: a failing disk or link. */
  io: (c: Call): Error => new CofferError("IO", `[faults] ${describeCall(c)}: EIO: i/o error (injected)`, { errno: "EIO" }),
  /** IO, errno ENOSPC: the store is full (as the fs store reports it). */
  noSpace: (c: Call): Error => new CofferError("IO", `[faults] ${describeCall(c)}: ENOSPC: no space left on device (injected)`, { errno: "ENOSPC" }),
  /** NOT_FOUND: the object is not there (a NotFoundError, as get and delete give). */
  notFound: (c: Call): Error => new NotFoundError(`${c.resource === undefined ? "object" : resourceName(c.resource)} ${c.mac ?? "?"} (injected)`, { resource: c.resource, mac: c.mac }),
  /** INTERRUPTED: as an aborted call. */
  interrupted: (c: Call): Error => new CofferError("INTERRUPTED", `[faults] ${describeCall(c)}: interrupted (injected)`),
} as const;

function faultFor(f: Fault | undefined, c: Call): Error {
  if (f === undefined) return faults.io(c);
  return typeof f === "function" ? f(c) : f;
}

// ------------------------------------------------------------- base ---

/**
 * A Store passing every call to `inner` through run(): decorators override
 * run() (and, for the bytes of puts, put() and wrapStaged()).
 */
export class DecoratedStore implements Store {
  readonly origin: string;
  readonly type: string;
  readonly root: string;
  readonly flags: number;
  /** Present exactly when the inner store has it. */
  readonly stage?: (resource: Resource, opts?: StageOptions) => Promise<StagedPut>;
  readonly sync?: (opts?: CallOptions) => Promise<void>;
  #stages = 0;

  constructor(readonly inner: Store) {
    this.origin = inner.origin;
    this.type = inner.type;
    this.root = inner.root;
    this.flags = inner.flags;
    if (inner.stage) this.stage = (resource, opts) => this.stageObject(resource, opts);
    if (inner.sync) this.sync = (opts) => this.run({ op: "sync" }, () => inner.sync!(opts));
  }

  /** Does call `c`: `next()` makes it on the inner store. */
  protected run<T>(c: Call, next: () => Promise<T>): Promise<T> {
    void c;
    return next();
  }

  /** The MACs a listing gives, from the inner store's (eventuallyConsistent edits it). */
  protected listed(resource: Resource, macs: Mac[]): Mac[] {
    void resource;
    return macs;
  }

  create(config: Uint8Array, opts?: CallOptions): Promise<void> {
    return this.run({ op: "create" }, () => this.inner.create(config, opts));
  }
  open(opts?: CallOptions): Promise<Uint8Array> {
    return this.run({ op: "open" }, () => this.inner.open(opts));
  }
  ping(opts?: CallOptions): Promise<void> {
    return this.run({ op: "ping" }, () => this.inner.ping(opts));
  }
  mode(opts?: CallOptions): Promise<number> {
    return this.run({ op: "mode" }, () => this.inner.mode(opts));
  }
  size(opts?: CallOptions): Promise<number> {
    return this.run({ op: "size" }, () => this.inner.size(opts));
  }

  async *list(resource: Resource, opts?: CallOptions): AsyncIterable<Mac> {
    const macs = await this.run({ op: "list", resource }, async () => {
      const all: Mac[] = [];
      for await (const m of this.inner.list(resource, opts)) all.push(m);
      return this.listed(resource, all);
    });
    for (const m of macs) {
      throwIfAborted(opts?.signal);
      yield m;
    }
  }

  put(resource: Resource, mac: Mac, data: Uint8Array | AsyncIterable<Uint8Array>, opts?: CallOptions): Promise<number> {
    const c = putCall(resource, mac, data);
    return this.run(c, () => this.inner.put(resource, mac, data, opts));
  }

  get(resource: Resource, mac: Mac, range?: Range, opts?: CallOptions): Promise<Uint8Array> {
    const c: Call = range === undefined ? { op: "get", resource, mac: toHex(mac) } : { op: "get", resource, mac: toHex(mac), range: { ...range } };
    return this.run(c, () => this.inner.get(resource, mac, range, opts));
  }

  delete(resource: Resource, mac: Mac, opts?: CallOptions): Promise<void> {
    return this.run({ op: "delete", resource, mac: toHex(mac) }, () => this.inner.delete(resource, mac, opts));
  }

  close(): Promise<void> {
    return this.run({ op: "close" }, () => this.inner.close());
  }

  private async stageObject(resource: Resource, opts?: StageOptions): Promise<StagedPut> {
    const staged = ++this.#stages;
    const c: Call = opts?.direct === undefined ? { op: "stage", resource, staged } : { op: "stage", resource, staged, direct: opts.direct };
    const inner = await this.run(c, () => this.inner.stage!(resource, opts));
    return this.wrapStaged(resource, staged, inner);
  }

  /** The StagedPut handed out for the inner store's `s`: its calls go through run() too. */
  protected wrapStaged(resource: Resource, staged: number, s: StagedPut): StagedPut {
    return {
      write: (parts) => this.run({ op: "write", resource, staged, bytes: byteCount(parts) }, () => s.write(parts)),
      commit: (mac, o) => this.run({ op: "commit", resource, staged, mac: toHex(mac) }, () => s.commit(mac, o)),
      abort: () => this.run({ op: "abort", resource, staged }, () => s.abort()),
    };
  }
}

function putCall(resource: Resource, mac: Mac, data: Uint8Array | AsyncIterable<Uint8Array>): Call {
  return data instanceof Uint8Array ? { op: "put", resource, mac: toHex(mac), bytes: data.byteLength } : { op: "put", resource, mac: toHex(mac) };
}

function byteCount(parts: readonly Uint8Array[]): number {
  return parts.reduce((n, p) => n + p.byteLength, 0);
}

/** Counts the calls matching a rule and tells which ones it fires on: the nth and the `times - 1` after it. */
class Trigger {
  seen = 0;
  readonly fired: Call[] = [];
  constructor(readonly rule: Selector & { nth?: number; times?: number }) {}
  /** Counts `c` if it matches; true when the rule fires on it. */
  hit(c: Call): boolean {
    if (!matches(this.rule, c)) return false;
    const n = ++this.seen;
    const first = this.rule.nth ?? 1;
    if (n < first || n >= first + (this.rule.times ?? 1)) return false;
    this.fired.push(c);
    return true;
  }
}

// -------------------------------------------------------- recording ---

export interface LogEntry extends Call {
  /** 1, 2, ...: the call's number, the same in its start and its end. */
  readonly seq: number;
  readonly phase: "start" | "done" | "failed";
  readonly error?: unknown;
}

export class RecordingStore extends DecoratedStore {
  readonly log: LogEntry[] = [];
  #seq = 0;

  protected override async run<T>(c: Call, next: () => Promise<T>): Promise<T> {
    const seq = ++this.#seq;
    this.log.push({ ...c, seq, phase: "start" });
    try {
      const r = await next();
      this.log.push({ ...c, seq, phase: "done" });
      return r;
    } catch (error) {
      this.log.push({ ...c, seq, phase: "failed", error });
      throw error;
    }
  }

  /** Entries of `phase` (default "start": every call made) whose call matches `sel`. */
  entries(sel: Selector = {}, phase: LogEntry["phase"] = "start"): LogEntry[] {
    return this.log.filter((l) => l.phase === phase && matches(sel, l));
  }

  /** Forgets what was logged so far. */
  clear(): void {
    this.log.length = 0;
  }
}

/** Logs every call on `store` (RecordingStore.log). */
export function recording(store: Store): RecordingStore {
  return new RecordingStore(store);
}

// ---------------------------------------------------------- failing ---

export interface FailRule extends Selector {
  /** The first matching call to fail, counted from 1 (default 1). */
  nth?: number;
  /** How many matching calls fail from the nth on (default 1; Infinity: all of them). */
  times?: number;
  /** What they fail with (default faults.io). */
  error?: Fault;
  /** Fail once the inner store has done the call (its effect stays: a lost reply). Default: before it reaches the store. */
  after?: boolean;
}

export class FailingStore extends DecoratedStore {
  #trigger: Trigger;
  #rule: FailRule;
  constructor(inner: Store, rule: FailRule) {
    super(inner);
    this.#rule = rule;
    this.#trigger = new Trigger(rule);
  }

  get rule(): FailRule {
    return this.#rule;
  }
  /** A new rule, counted afresh. */
  set rule(rule: FailRule) {
    this.#rule = rule;
    this.#trigger = new Trigger(rule);
  }
  /** Matching calls seen so far. */
  get seen(): number {
    return this.#trigger.seen;
  }
  /** The calls that were made to fail. */
  get failed(): readonly Call[] {
    return this.#trigger.fired;
  }

  protected override async run<T>(c: Call, next: () => Promise<T>): Promise<T> {
    const rule = this.#rule;
    if (!this.#trigger.hit(c)) return next();
    if (rule.after) await next();
    throw faultFor(rule.error, c);
  }
}

/**
 * Fails matching calls: `failing(store, { nth: 2, op: "put", resource: Resource.PACKFILE, error: faults.noSpace })`;
 * `{ times: 0 }` fails nothing (until `rule` is replaced).
 * A staged write or commit failed this way never reaches the inner StagedPut:
 * ending it (abort) is left to the caller, as the contract asks.
 */
export function failing(store: Store, rule: FailRule): FailingStore {
  return new FailingStore(store, rule);
}

// --------------------------------------------------------- cutShort ---

export interface CutRule extends Selector {
  /** The matching put or stage() whose object is cut, counted from 1 (default 1). Selectors see op "put" or "stage". */
  nth?: number;
  /** Bytes the store gets before the failure (default: half of a put's bytes, half of a staged object's first write). */
  keep?: number;
  /** What the put fails with (default faults.noSpace). */
  error?: Fault;
}

export class CutShortStore extends DecoratedStore {
  readonly #trigger: Trigger;
  readonly #rule: CutRule;
  constructor(inner: Store, rule: CutRule) {
    super(inner);
    this.#rule = rule;
    this.#trigger = new Trigger({ ...rule, op: ["put", "stage"], when: (c) => matches(rule, c) });
  }

  /** The puts and stage() calls that were cut short. */
  get cut(): readonly Call[] {
    return this.#trigger.fired;
  }

  override async put(resource: Resource, mac: Mac, data: Uint8Array | AsyncIterable<Uint8Array>, opts?: CallOptions): Promise<number> {
    const c = putCall(resource, mac, data);
    if (!this.#trigger.hit(c)) return this.inner.put(resource, mac, data, opts);
    const bytes = data instanceof Uint8Array ? data : await concatAll(data);
    const keep = Math.min(this.#rule.keep ?? bytes.byteLength >> 1, bytes.byteLength);
    const err = faultFor(this.#rule.error ?? faults.noSpace, c);
    async function* prefix(): AsyncIterable<Uint8Array> {
      if (keep > 0) yield bytes.subarray(0, keep);
      throw err;
    }
    let stored: number;
    try {
      stored = await this.inner.put(resource, mac, prefix(), opts);
    } catch (e) {
      if (e === err) throw e;
      throw new Error(`${describeCall(c)} cut short after ${keep} bytes failed with another error than the source's`, { cause: e });
    }
    throw new Error(`${describeCall(c)}: the store took a put whose source failed after ${keep} bytes (it reported ${stored} bytes)`);
  }

  protected override wrapStaged(resource: Resource, staged: number, s: StagedPut): StagedPut {
    const c: Call = { op: "stage", resource, staged };
    if (!this.#trigger.hit(c)) return s;
    const err = faultFor(this.#rule.error ?? faults.noSpace, c);
    let left = this.#rule.keep;
    let cut = false;
    return {
      write: async (parts) => {
        if (cut) throw err;
        left ??= byteCount(parts) >> 1;
        const through = takeBytes(parts, left);
        left -= byteCount(through);
        if (byteCount(through) < byteCount(parts)) {
          cut = true;
          if (through.length > 0) await s.write(through);
          throw err;
        }
        await s.write(parts);
      },
      commit: async () => {
        cut = true; // every write fitted in `keep`: the end is what is cut
        throw err;
      },
      abort: () => s.abort(),
    };
  }
}

/** Cuts matching puts short: `cutShort(store, { op: "put", resource: Resource.PACKFILE, keep: 1000 })`. */
export function cutShort(store: Store, rule: CutRule = {}): CutShortStore {
  return new CutShortStore(store, rule);
}

/** The first `n` bytes of `parts`, as views. */
function takeBytes(parts: readonly Uint8Array[], n: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (const p of parts) {
    if (n <= 0) break;
    out.push(p.byteLength <= n ? p : p.subarray(0, n));
    n -= p.byteLength;
  }
  return out;
}

async function concatAll(data: AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const p of data) parts.push(new Uint8Array(p)); // producers may reuse their buffers
  return new Uint8Array(Buffer.concat(parts));
}

// ---------------------------------------------------------- delayed ---

/** A gate calls wait at: held until open() (and from then on let through at once). */
export interface Gate {
  wait(c: Call): Promise<void>;
  open(): void;
  /** Resolves with the first call that came to the gate: the moment to look at the store while it waits. */
  readonly reached: Promise<Call>;
  /** Calls waiting at the gate now. */
  readonly waiting: readonly Call[];
  readonly isOpen: boolean;
}

export function gate(): Gate {
  let open!: () => void;
  const opened = new Promise<void>((r) => (open = r));
  let reach!: (c: Call) => void;
  const reached = new Promise<Call>((r) => (reach = r));
  const waiting: Call[] = [];
  let isOpen = false;
  return {
    async wait(c) {
      reach(c);
      if (isOpen) return;
      waiting.push(c);
      await opened;
      waiting.splice(waiting.indexOf(c), 1);
    },
    open() {
      isOpen = true;
      open();
    },
    reached,
    waiting,
    get isOpen() {
      return isOpen;
    },
  };
}

/** What a delayed call waits for: a Gate, a function's result (awaited), or milliseconds (timing only: never assert on it). */
export type Wait = Gate | ((c: Call) => unknown) | number;

export interface DelayOptions extends Selector {
  /** Wait after the inner store has done the call, before answering (default: before the call reaches it). */
  after?: boolean;
}

export class DelayedStore extends DecoratedStore {
  constructor(
    inner: Store,
    /** May be replaced at any time; undefined lets every call through. */
    public wait: Wait | undefined,
    public options: DelayOptions = {},
  ) {
    super(inner);
  }

  protected override async run<T>(c: Call, next: () => Promise<T>): Promise<T> {
    const w = this.wait;
    if (w === undefined || !matches(this.options, c)) return next();
    if (!this.options.after) await waitFor(w, c);
    const r = await next();
    if (this.options.after) await waitFor(w, c);
    return r;
  }
}

async function waitFor(w: Wait, c: Call): Promise<void> {
  if (typeof w === "number") await new Promise((r) => setTimeout(r, w));
  else if (typeof w === "function") await w(c);
  else await w.wait(c);
}

/** Holds matching calls: `const g = gate(); delayed(store, g, { op: "put", resource: Resource.STATE })`, later `g.open()`. */
export function delayed(store: Store, wait: Wait | undefined, options: DelayOptions = {}): DelayedStore {
  return new DelayedStore(store, wait, options);
}

// ---------------------------------------------- eventuallyConsistent ---

export interface ConsistencyOptions {
  /** Seeds the order of listings (default 1). */
  seed?: number;
  /** Objects deleted since the last settle() are still listed (their get is NOT_FOUND all the same). */
  lingeringDeletes?: boolean;
}

export class EventuallyConsistentStore extends DecoratedStore {
  /** Per resource, MACs (hex) put since the last settle() that no listing shows yet. */
  readonly #hidden = new Map<Resource, Set<string>>();
  /** Per resource, MACs listed or settled at some point: putting one again does not hide it. */
  readonly #visible = new Map<Resource, Set<string>>();
  readonly #lingering = new Map<Resource, Set<string>>();
  readonly #lingers: boolean;
  #rand: () => number;

  constructor(inner: Store, o: ConsistencyOptions = {}) {
    super(inner);
    this.#rand = mulberry32(o.seed ?? 1);
    this.#lingers = o.lingeringDeletes === true;
  }

  /** Every object put or deleted so far shows (or stops showing) in listings from now on. */
  settle(): void {
    for (const [r, macs] of this.#hidden) for (const m of macs) set(this.#visible, r).add(m);
    this.#hidden.clear();
    this.#lingering.clear();
  }

  /** How many objects listings show wrongly until the next settle(): put and not shown, or deleted and still shown. */
  get unsettled(): number {
    let n = 0;
    for (const s of this.#hidden.values()) n += s.size;
    return n + [...this.#lingering.values()].reduce((k, s) => k + s.size, 0);
  }

  protected override async run<T>(c: Call, next: () => Promise<T>): Promise<T> {
    const r = await next();
    if (c.resource === undefined || c.mac === undefined) return r;
    if (c.op === "put" || c.op === "commit") {
      if (!set(this.#visible, c.resource).has(c.mac)) set(this.#hidden, c.resource).add(c.mac);
      set(this.#lingering, c.resource).delete(c.mac);
    } else if (c.op === "delete") {
      const wasHidden = set(this.#hidden, c.resource).delete(c.mac);
      set(this.#visible, c.resource).delete(c.mac);
      if (this.#lingers && !wasHidden) set(this.#lingering, c.resource).add(c.mac);
    }
    return r;
  }

  protected override listed(resource: Resource, macs: Mac[]): Mac[] {
    const hidden = set(this.#hidden, resource);
    const visible = set(this.#visible, resource);
    const out = macs.filter((m) => !hidden.has(toHex(m)));
    for (const m of out) visible.add(toHex(m));
    const shown = new Set(out.map(toHex));
    for (const m of set(this.#lingering, resource)) if (!shown.has(m)) out.push(fromHex(m));
    // Fisher-Yates from the seeded generator, over a canonical order: the same seed gives the same orders.
    out.sort((a, b) => Buffer.compare(a, b));
    for (let i = out.length - 1; i > 0; i--) {
      const j = Math.floor(this.#rand() * (i + 1));
      [out[i], out[j]] = [out[j]!, out[i]!];
    }
    return out;
  }
}

/** Listings that lag behind puts (until settle()) and come in a seeded shuffled order. */
export function eventuallyConsistent(store: Store, o: ConsistencyOptions = {}): EventuallyConsistentStore {
  return new EventuallyConsistentStore(store, o);
}

function set(m: Map<Resource, Set<string>>, r: Resource): Set<string> {
  let s = m.get(r);
  if (!s) m.set(r, (s = new Set()));
  return s;
}

/** A small seeded generator of floats in [0, 1). */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
