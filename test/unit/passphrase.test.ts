/**
 * Passphrases are bytes (src/cli/passphrase.ts): a keyfile loses one line
 * ending and nothing else, and COFFER_PASSPHRASE's bytes are read back from
 * the process's environment block when Node's UTF-8 decoding lost them.
 */
import { describe, expect, it } from "vitest";
import { environValue, envPassphrase, keyfilePassphrase, processEnviron } from "../../src/cli/passphrase.js";
import { CofferError } from "../../src/util/errors.js";

const hex = (b: Uint8Array | null) => (b === null ? null : Buffer.from(b).toString("hex"));
const bytes = (s: string) => new Uint8Array(Buffer.from(s, "latin1"));

function codeOf(f: () => unknown): string | undefined {
  try {
    f();
  } catch (e) {
    return e instanceof CofferError ? e.code : `not a CofferError: ${String(e)}`;
  }
  return undefined;
}

describe("keyfilePassphrase", () => {
  it("strips exactly one trailing \\n or \\r\\n", () => {
    expect(hex(keyfilePassphrase(bytes("secret\n")))).toBe(hex(bytes("secret")));
    expect(hex(keyfilePassphrase(bytes("secret\r\n")))).toBe(hex(bytes("secret")));
    expect(hex(keyfilePassphrase(bytes("secret\n\n")))).toBe(hex(bytes("secret\n")));
    expect(hex(keyfilePassphrase(bytes("secret\r\n\r\n")))).toBe(hex(bytes("secret\r\n")));
    expect(hex(keyfilePassphrase(bytes("secret\r")))).toBe(hex(bytes("secret\r")));
    expect(hex(keyfilePassphrase(bytes(" secret \t")))).toBe(hex(bytes(" secret \t")));
    expect(hex(keyfilePassphrase(bytes("caf\xe9\xff\n")))).toBe("636166e9ff");
    expect(keyfilePassphrase(bytes("\n")).byteLength).toBe(0);
    expect(keyfilePassphrase(bytes("\r\n")).byteLength).toBe(0);
    expect(keyfilePassphrase(bytes("")).byteLength).toBe(0);
  });
});

describe("environValue", () => {
  const block = bytes("A=1\0COFFER_PASSPHRASEX=no\0COFFER_PASSPHRASE=caf\xe9=x\0COFFER_PASSPHRASE=second\0B=\0");
  it("finds the first entry of the name exactly, with its raw bytes (an '=' in the value kept)", () => {
    expect(hex(environValue(block, "COFFER_PASSPHRASE"))).toBe(hex(bytes("caf\xe9=x")));
    expect(hex(environValue(block, "A"))).toBe(hex(bytes("1")));
    expect(hex(environValue(block, "B"))).toBe("");
    expect(environValue(block, "C")).toBeNull();
    expect(environValue(new Uint8Array(0), "A")).toBeNull();
    expect(hex(environValue(bytes("A=no-terminator"), "A"))).toBe(hex(bytes("no-terminator")));
  });
});

describe("envPassphrase", () => {
  const raw = bytes("caf\xe9-secret-\xe0\xe8\xec");
  const decoded = Buffer.from(raw).toString("utf8");
  const other = bytes("caf\xf1-secret-\xff\xfe\xfd");

  it("unset or empty is no passphrase", () => {
    expect(envPassphrase(undefined)).toBeNull();
    expect(envPassphrase("")).toBeNull();
  });

  it("a value that decoded without loss is its UTF-8, without reading the environment", () => {
    const never = () => {
      throw new Error("read");
    };
    expect(hex(envPassphrase("pässwörd ✓", never))).toBe(Buffer.from("pässwörd ✓", "utf8").toString("hex"));
  });

  it("a value with U+FFFD is the variable's raw bytes, when they decode to it", () => {
    expect(decoded).toBe(Buffer.from(other).toString("utf8"));
    const env = (v: Uint8Array) => () => new Uint8Array(Buffer.concat([bytes("A=1\0COFFER_PASSPHRASE="), v, bytes("\0")]));
    expect(hex(envPassphrase(decoded, env(raw)))).toBe(hex(raw));
    expect(hex(envPassphrase(decoded, env(other)))).toBe(hex(other));
    // a literal U+FFFD (valid UTF-8) is itself
    expect(hex(envPassphrase("a\ufffd", env(bytes("a\xef\xbf\xbd"))))).toBe("61efbfbd");
  });

  it("is USAGE when the raw bytes cannot be had, or are not what was decoded", () => {
    expect(codeOf(() => envPassphrase(decoded, () => null))).toBe("USAGE");
    expect(codeOf(() => envPassphrase(decoded, () => bytes("A=1\0")))).toBe("USAGE");
    expect(codeOf(() => envPassphrase(decoded, () => bytes("COFFER_PASSPHRASE=changed since\0")))).toBe("USAGE");
  });

  it("this process's environment block is readable on Linux", () => {
    if (process.platform !== "linux") return;
    const env = processEnviron();
    expect(env).not.toBeNull();
    expect(environValue(env!, "PATH")).not.toBeNull();
  });
});
