/**
 * libc's extended attribute calls, in-process through koffi (an FFI that
 * ships a prebuilt package per platform; its install script is not needed
 * and not run). Paths and attribute names cross as bytes, so a name that is
 * not UTF-8 is read and written exactly; `@napi-rs/xattr` takes and returns
 * UTF-8 strings only and could not. The calls never follow symlinks.
 * Linux: llistxattr, lgetxattr, lsetxattr, lremovexattr (tested); macOS:
 * the same calls with XATTR_NOFOLLOW (declared, untested); elsewhere every
 * call fails with ENOTSUP.
 */

import { createRequire } from "node:module";
import { constants } from "node:os";
import { getSystemErrorMessage, getSystemErrorName } from "node:util";
import type * as Koffi from "koffi";

/** A failed call: `code` is the errno's name (ENOTSUP, EPERM...). */
export class XattrError extends Error {
  constructor(
    readonly errno: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = "XattrError";
  }
}

/** The calls the fs connectors use; tests may swap them (setXattrSyscalls) to inject failures. */
export interface XattrSyscalls {
  /** The entry's attribute names, each its raw bytes. */
  list(path: Buffer): Buffer[];
  /** An attribute's value. */
  get(path: Buffer, name: Buffer): Buffer;
  /** Creates or replaces an attribute. */
  set(path: Buffer, name: Buffer, value: Uint8Array): void;
  remove(path: Buffer, name: Buffer): void;
}

const ENOTSUP = constants.errno.ENOTSUP;
export const EOPNOTSUPP = constants.errno.EOPNOTSUPP ?? ENOTSUP;
const ERANGE = constants.errno.ERANGE;

/** Whether an errno means "this file system (or platform) has no such attributes". */
export const isUnsupported = (errno: number): boolean => errno === ENOTSUP || errno === EOPNOTSUPP;

/** The error of a failed call: its errno's name and text, e.g. `EPERM (operation not permitted)`. */
export function xattrError(errno: number): XattrError {
  let code = `errno ${errno}`;
  let text = "";
  try {
    code = getSystemErrorName(-errno);
    // libuv's text for ENOTSUP speaks of sockets
    text = isUnsupported(errno) ? "not supported by the file system" : getSystemErrorMessage(-errno);
  } catch {
    // an errno Node does not know: its number is the message
  }
  return new XattrError(errno, code, text !== "" ? `${code} (${text})` : code);
}

/**
 * The first try's buffer: most lists and values fit, and it stays small
 * because the kernel allocates as much as it is offered on every call (a
 * 64 KiB offer made a no-change backup of /usr/share 2x slower).
 */
const SCRATCH = 1024;
const NUL = Buffer.alloc(1);
const cstr = (b: Buffer): Buffer => Buffer.concat([b, NUL]);

type Fn = (...args: unknown[]) => number | bigint;

interface Raw {
  list: (path: Buffer, out: Buffer | null, size: number) => number;
  get: (path: Buffer, name: Buffer, out: Buffer | null, size: number) => number;
  set: (path: Buffer, name: Buffer, value: Uint8Array, size: number) => number;
  remove: (path: Buffer, name: Buffer) => number;
  errno: () => number;
}

/** Binds the platform's calls; undefined where there are none. */
function bind(): Raw | undefined {
  if (process.platform !== "linux" && process.platform !== "darwin") return undefined;
  const koffi = createRequire(import.meta.url)("koffi") as typeof Koffi;
  const n = (v: number | bigint) => Number(v);
  if (process.platform === "linux") {
    let libc: Koffi.LibraryHandle;
    try {
      libc = koffi.load("libc.so.6");
    } catch {
      libc = koffi.load(null); // not glibc (musl): the symbols the process already has
    }
    const list = libc.func("intptr_t llistxattr(const void *path, void *list, uintptr_t size)") as Fn;
    const get = libc.func("intptr_t lgetxattr(const void *path, const void *name, void *value, uintptr_t size)") as Fn;
    const set = libc.func("int lsetxattr(const void *path, const void *name, const void *value, uintptr_t size, int flags)") as Fn;
    const remove = libc.func("int lremovexattr(const void *path, const void *name)") as Fn;
    return {
      list: (p, o, s) => n(list(p, o, s)),
      get: (p, k, o, s) => n(get(p, k, o, s)),
      set: (p, k, v, s) => n(set(p, k, v, s, 0)),
      remove: (p, k) => n(remove(p, k)),
      errno: () => koffi.errno(),
    };
  }
  const XATTR_NOFOLLOW = 1;
  const libSystem = koffi.load("/usr/lib/libSystem.B.dylib");
  const list = libSystem.func("intptr_t listxattr(const void *path, void *list, uintptr_t size, int options)") as Fn;
  const get = libSystem.func("intptr_t getxattr(const void *path, const void *name, void *value, uintptr_t size, uint32_t position, int options)") as Fn;
  const set = libSystem.func("int setxattr(const void *path, const void *name, const void *value, uintptr_t size, uint32_t position, int options)") as Fn;
  const remove = libSystem.func("int removexattr(const void *path, const void *name, int options)") as Fn;
  return {
    list: (p, o, s) => n(list(p, o, s, XATTR_NOFOLLOW)),
    get: (p, k, o, s) => n(get(p, k, o, s, 0, XATTR_NOFOLLOW)),
    set: (p, k, v, s) => n(set(p, k, v, s, 0, XATTR_NOFOLLOW)),
    remove: (p, k) => n(remove(p, k, XATTR_NOFOLLOW)),
    errno: () => koffi.errno(),
  };
}

/**
 * Calls `call` with the scratch buffer, then (on ERANGE: the list or value
 * is larger, or grew since) asks for the size and retries with one that
 * fits. Returns a copy of the bytes.
 */
function readSized(raw: Raw, call: (out: Buffer | null, size: number) => number, scratch: Buffer): Buffer {
  let out = scratch;
  for (let attempt = 0; ; attempt++) {
    const got = call(out, out.length);
    if (got >= 0) return Buffer.from(out.subarray(0, got));
    const errno = raw.errno();
    if (errno !== ERANGE || attempt >= 8) throw xattrError(errno);
    const size = call(null, 0);
    if (size < 0) throw xattrError(raw.errno());
    out = Buffer.allocUnsafe(Math.max(size, out.length * 2));
  }
}

function nativeSyscalls(raw: Raw): XattrSyscalls {
  const scratch = Buffer.allocUnsafe(SCRATCH);
  return {
    list(path) {
      const p = cstr(path);
      const bytes = readSized(raw, (o, s) => raw.list(p, o, s), scratch);
      const names: Buffer[] = [];
      let start = 0;
      for (let i = 0; i < bytes.length; i++) {
        if (bytes[i] !== 0) continue;
        if (i > start) names.push(bytes.subarray(start, i));
        start = i + 1;
      }
      return names;
    },
    get(path, name) {
      const p = cstr(path);
      const k = cstr(name);
      return readSized(raw, (o, s) => raw.get(p, k, o, s), scratch);
    },
    set(path, name, value) {
      if (raw.set(cstr(path), cstr(name), value, value.byteLength) < 0) throw xattrError(raw.errno());
    },
    remove(path, name) {
      if (raw.remove(cstr(path), cstr(name)) < 0) throw xattrError(raw.errno());
    },
  };
}

/** Where the platform has no xattr calls (or koffi did not load): every call fails with ENOTSUP. */
function unsupportedSyscalls(why: string): XattrSyscalls {
  const fail = (): never => {
    throw new XattrError(ENOTSUP, "ENOTSUP", why);
  };
  return { list: fail, get: fail, set: fail, remove: fail };
}

let current: XattrSyscalls | undefined;

/** The calls in use, bound on first use. */
export function xattrSyscalls(): XattrSyscalls {
  if (current === undefined) {
    let raw: Raw | undefined;
    let why = `extended attributes are not supported on ${process.platform}`;
    try {
      raw = bind();
    } catch (e) {
      why = `extended attributes are not available (koffi: ${e instanceof Error ? e.message : String(e)})`;
    }
    current = raw !== undefined ? nativeSyscalls(raw) : unsupportedSyscalls(why);
  }
  return current;
}

/** Replaces the calls (tests: a file system that refuses); undefined restores the native ones. Returns the previous. */
export function setXattrSyscalls(s: XattrSyscalls | undefined): XattrSyscalls | undefined {
  const prev = current;
  current = s;
  return prev;
}
