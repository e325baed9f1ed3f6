/**
 * The sftp:// location form and the settings its parameters resolve to:
 * user and port from the location or the parameters, the host-key rule,
 * and the usage errors of a malformed location or conflicting parameters.
 */
import { describe, expect, it } from "vitest";
import { parseLocation, parseSftpLocation } from "../../src/connectors/location.js";
import { validateConfig } from "../../src/connectors/params.js";
import type { ConnectorOptions } from "../../src/connectors/records.js";
import { SFTP_PARAMS, sftpSettings } from "../../src/connectors/sftp/params.js";

const OPTIONS: ConnectorOptions = { hostname: "h", os: "linux", arch: "x64", cwd: "/work", maxConcurrency: 4, excludes: [], noXattr: false, env: { HOME: "/home/ann", USER: "ann" } };

function settings(location: string, params: Record<string, string> = {}, env: Record<string, string> = { HOME: "/home/ann", USER: "ann" }) {
  return sftpSettings(parseLocation(location), validateConfig('store "sftp"', SFTP_PARAMS, params), { ...OPTIONS, env });
}

describe("sftp locations", () => {
  it("parses user, host, port and path; a second slash makes the path absolute", () => {
    expect(parseSftpLocation(parseLocation("sftp://bob@backup.example:2222/repos/laptop/"))).toEqual({ user: "bob", host: "backup.example", port: 2222, path: "repos/laptop" });
    expect(parseSftpLocation(parseLocation("sftp://host//srv/repo"))).toEqual({ user: undefined, host: "host", port: undefined, path: "/srv/repo" });
    expect(parseSftpLocation(parseLocation("sftp://[::1]:22/r"))).toMatchObject({ host: "::1", port: 22, path: "r" });
  });

  it("refuses a location without a path, a bad port or no slashes", () => {
    for (const bad of ["sftp://host", "sftp://host/", "sftp://host:0/r", "sftp://host:70000/r", "sftp:host/r", "sftp://a@/r"]) {
      expect(() => parseSftpLocation(parseLocation(bad)), bad).toThrow(expect.objectContaining({ code: "USAGE", message: expect.stringContaining(bad) }));
    }
  });

  it("takes user and port from the parameters or defaults, and refuses a conflict", () => {
    expect(settings("sftp://h/r")).toMatchObject({ user: "ann", port: 22, where: "sftp://ann@h", connections: 3 });
    expect(settings("sftp://h/r", { user: "bob", port: "2200" })).toMatchObject({ user: "bob", port: 2200, where: "sftp://bob@h:2200" });
    expect(() => settings("sftp://carl@h/r", { user: "bob" })).toThrow(expect.objectContaining({ code: "USAGE" }));
    expect(() => settings("sftp://h:23/r", { port: "24" })).toThrow(expect.objectContaining({ code: "USAGE" }));
    expect(() => settings("sftp://h/r", {}, { HOME: "/home/ann" })).toThrow(expect.objectContaining({ code: "USAGE", message: expect.stringContaining("no user") }));
  });

  it("checks host keys against ~/.ssh/known_hosts unless told otherwise; ignoring and pinning exclude each other", () => {
    expect(settings("sftp://h/r").hostKey).toEqual({ kind: "known_hosts", file: "/home/ann/.ssh/known_hosts" });
    expect(settings("sftp://h/r", { known_hosts: "kh" }).hostKey).toEqual({ kind: "known_hosts", file: "/work/kh" });
    const fp = `SHA256:${"A".repeat(43)}`;
    expect(settings("sftp://h/r", { host_key_fingerprint: fp }).hostKey).toEqual({ kind: "fingerprint", fingerprint: fp });
    expect(settings("sftp://h/r", { insecure_ignore_host_key: "true" }).hostKey).toEqual({ kind: "ignore" });
    expect(() => settings("sftp://h/r", { insecure_ignore_host_key: "true", host_key_fingerprint: fp })).toThrow(expect.objectContaining({ code: "USAGE" }));
    expect(() => settings("sftp://h/r", {}, { USER: "ann" })).toThrow(expect.objectContaining({ code: "USAGE", message: expect.stringContaining("known_hosts") }));
  });
});
