/**
 * What the fuzz properties of test/fuzz share: how many cases each runs and
 * from which seed, mutations of valid encodings, and the checks every case
 * ends with (the error is the one documented; nothing allocated what a
 * forged length claims).
 *
 * Runs: FUZZ_RUNS cases per property in the ordinary test run, with a seed
 * fixed per property (from its test name), so that CI is reproducible and a
 * failure there fails the same way on any machine. `npm run fuzz` sets
 * COFFER_FUZZ_RUNS (cases per property) and leaves the seed to fast-check,
 * so that every long run explores new cases; fast-check prints the seed and
 * path of a failure, which COFFER_FUZZ_SEED and COFFER_FUZZ_PATH replay.
 * A property whose cases are costly (files, processes, key derivation)
 * runs a fraction of them (`weight`).
 */
import { getHeapStatistics } from "node:v8";
import { encode } from "@msgpack/msgpack";
import fc from "fast-check";
import { expect } from "vitest";
import { CofferError, CorruptError, type ErrorCode } from "../../src/util/errors.js";

/** Cases per property in the ordinary test run. */
const FUZZ_RUNS = 2000;

function envInt(name: string): number | undefined {
  const v = process.env[name];
  if (v === undefined || v === "") return undefined;
  const n = Number(v);
  if (!Number.isSafeInteger(n)) throw new Error(`${name}=${v}: not an integer`);
  return n;
}

/** FNV-1a of the test's name: its fixed seed. */
function seedOf(name: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193);
  return h | 0;
}

/**
 * fast-check parameters for the property of the running test: its number
 * of cases (`weight` of FUZZ_RUNS or of COFFER_FUZZ_RUNS, at least 10), its
 * seed, and the regression examples it always runs first.
 */
export function fuzzParams<T>(o: { weight?: number; examples?: T[] } = {}): fc.Parameters<T> {
  const long = envInt("COFFER_FUZZ_RUNS");
  const seed = envInt("COFFER_FUZZ_SEED") ?? (long === undefined ? seedOf(expect.getState().currentTestName ?? "") : undefined);
  const path = process.env.COFFER_FUZZ_PATH;
  return {
    numRuns: Math.max(10, Math.round((long ?? FUZZ_RUNS) * (o.weight ?? 1))),
    ...(seed !== undefined ? { seed } : {}),
    ...(path ? { path } : {}),
    ...(o.examples ? { examples: o.examples } : {}),
  };
}

// ------------------------------------------------------------ mutations ---

/** Values a forged length or count field takes: around the 2^31 and 2^32 edges, "negative" and 0. */
export const HUGE_U32 = [0, 1, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff] as const;
export const HUGE_U64 = [0n, 1n, 2n ** 31n, 2n ** 32n, 2n ** 53n - 1n, 2n ** 53n, 2n ** 63n, 2n ** 64n - 1n] as const;

/**
 * msgpack headers that claim more than any small input holds: arrays and
 * maps of 2^16-1 and 2^32-1 elements (and 2^25-1, the largest array V8
 * allocates eagerly), bin, str and ext of 2^31 bytes, and the int64 and
 * uint64 extremes.
 */
export const MSGPACK_FORGERIES: readonly Uint8Array[] = [
  Uint8Array.of(0xdc, 0xff, 0xff),
  Uint8Array.of(0xdd, 0xff, 0xff, 0xff, 0xff),
  Uint8Array.of(0xdd, 0x01, 0xff, 0xff, 0xff),
  Uint8Array.of(0xde, 0xff, 0xff),
  Uint8Array.of(0xdf, 0xff, 0xff, 0xff, 0xff),
  Uint8Array.of(0xc6, 0x80, 0x00, 0x00, 0x00),
  Uint8Array.of(0xdb, 0x80, 0x00, 0x00, 0x00),
  Uint8Array.of(0xc9, 0x80, 0x00, 0x00, 0x00, 0x01),
  Uint8Array.of(0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0),
  Uint8Array.of(0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff),
  Uint8Array.of(0xd6, 0xff, 0xff, 0xff, 0xff, 0xff), // a timestamp extension
  Uint8Array.of(0xc1), // never used
];

/** One change to a byte string; positions are taken modulo its length. */
export type Mutation =
  | { kind: "flip"; at: number; bit: number }
  | { kind: "truncate"; at: number }
  | { kind: "extend"; bytes: Uint8Array }
  | { kind: "overwrite"; at: number; bytes: Uint8Array }
  | { kind: "insert"; at: number; bytes: Uint8Array }
  | { kind: "remove"; at: number; n: number }
  | { kind: "repeat"; at: number; n: number }
  | { kind: "u32"; at: number; value: number; littleEndian: boolean }
  | { kind: "u64"; at: number; value: bigint; littleEndian: boolean };

const at = fc.nat();
const someBytes = fc.uint8Array({ minLength: 1, maxLength: 24 });

const arbMutation: fc.Arbitrary<Mutation> = fc.oneof(
  { arbitrary: fc.record({ kind: fc.constant("flip" as const), at, bit: fc.integer({ min: 0, max: 7 }) }), weight: 4 },
  fc.record({ kind: fc.constant("truncate" as const), at }),
  fc.record({ kind: fc.constant("extend" as const), bytes: fc.oneof(someBytes, fc.constantFrom(...MSGPACK_FORGERIES)) }),
  fc.record({ kind: fc.constant("overwrite" as const), at, bytes: fc.oneof(someBytes, fc.constantFrom(...MSGPACK_FORGERIES)) }),
  fc.record({ kind: fc.constant("insert" as const), at, bytes: fc.oneof(someBytes, fc.constantFrom(...MSGPACK_FORGERIES)) }),
  fc.record({ kind: fc.constant("remove" as const), at, n: fc.integer({ min: 1, max: 16 }) }),
  fc.record({ kind: fc.constant("repeat" as const), at, n: fc.integer({ min: 1, max: 16 }) }),
  { arbitrary: fc.record({ kind: fc.constant("u32" as const), at, value: fc.oneof(fc.constantFrom(...HUGE_U32), fc.nat()), littleEndian: fc.boolean() }), weight: 2 },
  fc.record({ kind: fc.constant("u64" as const), at, value: fc.constantFrom(...HUGE_U64), littleEndian: fc.boolean() }),
);

/** 1 to 3 mutations, applied in order. */
export const arbMutations = fc.array(arbMutation, { minLength: 1, maxLength: 3 });

export function mutate(input: Uint8Array, m: Mutation): Uint8Array {
  const b = Buffer.from(input);
  const n = b.byteLength;
  const pos = (x: number, room = 0) => (n - room > 0 ? x % (n - room + 1) : 0);
  switch (m.kind) {
    case "flip": {
      if (n === 0) return Uint8Array.of(1 << m.bit);
      const i = m.at % n;
      b[i] = b[i]! ^ (1 << m.bit);
      return new Uint8Array(b);
    }
    case "truncate":
      return new Uint8Array(b.subarray(0, n === 0 ? 0 : m.at % n));
    case "extend":
      return new Uint8Array(Buffer.concat([b, m.bytes]));
    case "overwrite": {
      const i = pos(m.at, m.bytes.byteLength);
      return new Uint8Array(Buffer.concat([b.subarray(0, i), m.bytes, b.subarray(i + m.bytes.byteLength)]));
    }
    case "insert": {
      const i = pos(m.at);
      return new Uint8Array(Buffer.concat([b.subarray(0, i), m.bytes, b.subarray(i)]));
    }
    case "remove": {
      const i = pos(m.at);
      return new Uint8Array(Buffer.concat([b.subarray(0, i), b.subarray(i + m.n)]));
    }
    case "repeat": {
      const i = pos(m.at);
      return new Uint8Array(Buffer.concat([b.subarray(0, i + m.n), b.subarray(i)]));
    }
    case "u32": {
      if (n < 4) return new Uint8Array(b);
      const i = pos(m.at, 4);
      if (m.littleEndian) b.writeUInt32LE(m.value >>> 0, i);
      else b.writeUInt32BE(m.value >>> 0, i);
      return new Uint8Array(b);
    }
    case "u64": {
      if (n < 8) return new Uint8Array(b);
      const i = pos(m.at, 8);
      if (m.littleEndian) b.writeBigUInt64LE(m.value, i);
      else b.writeBigUInt64BE(m.value, i);
      return new Uint8Array(b);
    }
  }
}

export function mutateAll(input: Uint8Array, ms: readonly Mutation[]): Uint8Array {
  return ms.reduce(mutate, input);
}

/** A mutation that writes a u32 or u64 field at a known offset (a footer's length, a header's count). */
export function fieldAt(offset: number, bits: 32 | 64, littleEndian = true): fc.Arbitrary<Mutation> {
  return bits === 32
    ? fc.record({ kind: fc.constant("u32" as const), at: fc.constant(offset), value: fc.oneof(fc.constantFrom(...HUGE_U32), fc.nat()), littleEndian: fc.constant(littleEndian) })
    : fc.record({ kind: fc.constant("u64" as const), at: fc.constant(offset), value: fc.oneof(fc.constantFrom(...HUGE_U64), fc.bigInt({ min: 0n, max: 2n ** 64n - 1n })), littleEndian: fc.constant(littleEndian) });
}

// ------------------------------------------------ msgpack value trees ---

/**
 * Values of every msgpack type, with the ones decoders trip on weighted
 * up: nil, integers at the int64/uint64 edges, negative and fractional
 * numbers, empty and 32-byte binaries, strings, nested arrays and maps.
 */
export const arbMsgpackValue: fc.Arbitrary<unknown> = fc.letrec<{ value: unknown }>((tie) => ({
  value: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    fc.constantFrom(null, true, false, 0, -1, 1, 1.5, -0.5, Number.MAX_SAFE_INTEGER, -(2 ** 53), 2 ** 32, NaN, "", "v", "e"),
    fc.bigInt({ min: -(2n ** 63n), max: 2n ** 64n - 1n }),
    fc.integer(),
    fc.double(),
    fc.string({ maxLength: 12 }),
    fc.uint8Array({ maxLength: 40 }),
    fc.constant(new Uint8Array(32)),
    fc.array(tie("value"), { maxLength: 5 }),
    fc.dictionary(fc.constantFrom("v", "e", "n", "k", "s", "ch", "T", "x", "id", "packs", "damaged", "kind", "z"), tie("value"), { maxKeys: 4 }),
  ),
})).value;

/** msgpack of any value arbMsgpackValue or mutateValue gives (bigints as int64/uint64). */
export function encodeValue(v: unknown): Uint8Array {
  return encode(v, { useBigInt64: true });
}

/** A change to a decoded msgpack value: a node (by its index in a walk) replaced, deleted from its parent, or given a new key. */
export interface ValueMutation {
  node: number;
  op: "replace" | "delete" | "add";
  key: string;
  value: unknown;
}

export const arbValueMutation: fc.Arbitrary<ValueMutation> = fc.record({
  node: fc.nat(),
  op: fc.constantFrom("replace" as const, "replace" as const, "delete" as const, "add" as const),
  key: fc.constantFrom("v", "e", "n", "k", "s", "t", "ch", "T", "x", "L", "id", "mac", "zz"),
  value: arbMsgpackValue,
});

type Container = unknown[] | Record<string, unknown>;

/** A deep copy of `v` with `m` applied (Uint8Arrays are leaves). */
export function mutateValue(v: unknown, m: ValueMutation): unknown {
  const root: { r: unknown } = { r: structuredClone(v) };
  const slots: [Container | { r: unknown }, string | number][] = [];
  const walk = (parent: Container | { r: unknown }, key: string | number) => {
    slots.push([parent, key]);
    const x = (parent as Record<string | number, unknown>)[key];
    if (x instanceof Uint8Array || x === null || typeof x !== "object") return;
    if (Array.isArray(x)) x.forEach((_, i) => walk(x, i));
    else for (const k of Object.keys(x)) walk(x as Record<string, unknown>, k);
  };
  walk(root, "r");
  const [parent, key] = slots[m.node % slots.length]!;
  const p = parent as Record<string | number, unknown>;
  const target = p[key];
  if (m.op === "replace" || parent === root) p[key] = m.value;
  else if (m.op === "delete") {
    if (Array.isArray(parent)) parent.splice(key as number, 1);
    else delete p[key];
  } else if (target !== null && typeof target === "object" && !(target instanceof Uint8Array)) {
    if (Array.isArray(target)) target.push(m.value);
    else (target as Record<string, unknown>)[m.key] = m.value;
  } else p[key] = m.value;
  return root.r;
}

// ------------------------------------------------------------ outcomes ---

export type Outcome<T> = { ok: true; value: T } | { ok: false; error: unknown };

/** What a call gives: its value or its error, never a throw. */
export async function outcome<T>(f: () => T | Promise<T>): Promise<Outcome<T>> {
  try {
    return { ok: true, value: await f() };
  } catch (error) {
    return { ok: false, error };
  }
}

function describeError(e: unknown): string {
  return e instanceof Error ? `${e.constructor.name}: ${e.message}\n${e.stack ?? ""}` : String(e);
}

/** `e` is a CofferError of one of `codes` (CORRUPT: a CorruptError), not a TypeError, RangeError or anything else. */
function expectCofferError(e: unknown, codes: readonly ErrorCode[] = ["CORRUPT"]): void {
  if (!(e instanceof CofferError) || !codes.includes(e.code)) expect.fail(`expected a CofferError of ${codes.join(" or ")}, got ${describeError(e)}`);
  if (e.code === "CORRUPT" && !(e instanceof CorruptError)) expect.fail(`a CORRUPT error that is not a CorruptError: ${describeError(e)}`);
}

/** The outcome is a failure with a CofferError of `codes` (see expectCofferError). */
export function expectFailure(o: Outcome<unknown>, codes: readonly ErrorCode[] = ["CORRUPT"]): void {
  if (o.ok) expect.fail(`expected a ${codes.join(" or ")} error, but it decoded: ${String(o.value)}`);
  expectCofferError(o.error, codes);
}

/** When the outcome is a failure, it is a CofferError of `codes`; its value (if any) for further checks. */
export function valueOrFailure<T>(o: Outcome<T>, codes: readonly ErrorCode[] = ["CORRUPT"]): T | undefined {
  if (o.ok) return o.value;
  expectCofferError(o.error, codes);
  return undefined;
}

// ---------------------------------------------------- allocation bound ---

/**
 * Far more than a decoder of a fuzzed input (a few KiB) needs, far less
 * than the 2^31 bytes or 2^25 elements a forged length claims.
 */
const ALLOCATION_BOUND = 64 << 20;

/** What boundedAllocation() refuses to allocate, so that the test itself never makes the claimed buffer. */
class AllocationRefused extends Error {
  constructor(readonly size: number) {
    super(`refused to allocate ${size} bytes (more than ${ALLOCATION_BOUND})`);
  }
}

type Allocator = (size: number, ...rest: never[]) => Buffer;

/**
 * Runs `f` and checks that it did not allocate what an input claims but
 * does not hold, three ways: a request of more than ALLOCATION_BOUND bytes
 * from Buffer.alloc, allocUnsafe or allocUnsafeSlow (what coffer, Node's
 * fs and zlib allocate with) is refused and fails the check, even if `f`
 * caught the refusal; and neither the memory outside the JS heap (typed
 * arrays' backing stores) nor the JS heap (arrays) may grow by more than
 * the bound across the call.
 * The margins are wide: garbage collection can only shrink the growth.
 */
export async function boundedAllocation<T>(f: () => T | Promise<T>): Promise<Outcome<T>> {
  const names = ["alloc", "allocUnsafe", "allocUnsafeSlow"] as const;
  const saved = names.map((n) => Buffer[n] as Allocator);
  const refused: number[] = [];
  names.forEach((n, i) => {
    const real = saved[i]!;
    (Buffer as unknown as Record<string, Allocator>)[n] = (size: number, ...rest: never[]) => {
      if (typeof size === "number" && size > ALLOCATION_BOUND) {
        refused.push(size);
        throw new AllocationRefused(size);
      }
      return real.call(Buffer, size, ...rest);
    };
  });
  const before = getHeapStatistics();
  let o: Outcome<T>;
  try {
    o = await outcome(f);
  } finally {
    names.forEach((n, i) => ((Buffer as unknown as Record<string, Allocator>)[n] = saved[i]!));
  }
  const after = getHeapStatistics();
  if (refused.length > 0) expect.fail(`asked for ${refused.join(", ")} bytes (bound ${ALLOCATION_BOUND})`);
  expect(after.external_memory - before.external_memory, "ArrayBuffer memory grew by more than the bound").toBeLessThan(ALLOCATION_BOUND);
  expect(after.used_heap_size - before.used_heap_size, "the JS heap grew by more than the bound").toBeLessThan(ALLOCATION_BOUND);
  return o;
}
