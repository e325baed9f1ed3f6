/**
 * The parameters of the sftp connectors and the settings they resolve to:
 * the location's user and port (or the `user` and `port` parameters), the
 * credentials (identity_file, password_file, the ssh agent at SSH_AUTH_SOCK)
 * and the host-key rules. It imports no ssh2, so that registering the
 * connectors loads nothing heavy.
 */
import * as path from "node:path";
import { CofferError } from "../../util/errors.js";
import { type Location, parseSftpLocation } from "../location.js";
import { numericValue, type ParamSpec } from "../params.js";
import type { ConnectorOptions } from "../records.js";

export const SFTP_PARAMS: readonly ParamSpec[] = [
  { name: "user", type: "string", description: "the login name when the location has none (default: $USER)" },
  { name: "port", type: "int", greaterThan: 0, lessThan: 65536, description: "the port when the location has none (default 22)" },
  { name: "identity_file", type: "string", description: "a private key file (OpenSSH or PEM, without a passphrase)" },
  { name: "password_file", type: "string", description: "a file whose first line is the password" },
  { name: "known_hosts", type: "string", description: "the known_hosts file the host key is checked against (default ~/.ssh/known_hosts)" },
  { name: "host_key_fingerprint", type: "string", regex: "SHA256:[A-Za-z0-9+/]{43}=?", description: "the host key's SHA256 fingerprint as ssh-keygen -l prints it: pins it, instead of known_hosts" },
  { name: "insecure_ignore_host_key", type: "bool", default: "false", description: "accept any host key (for tests only: anyone between here and the host can read and change the repository)" },
  { name: "connections", type: "int", default: "3", greaterThan: 0, lessThan: 17, description: "SSH connections used in parallel" },
  { name: "timeout", type: "duration", default: "30s", greaterThan: 0, description: "a request unanswered this long fails its connection, and the operation is run again on a fresh one" },
];

/** What a connection needs, resolved from the location, the parameters and the run's environment. */
export interface SftpSettings {
  host: string;
  port: number;
  user: string;
  /** The path on the server, as the location gives it. */
  path: string;
  /** `sftp://user@host:port`, for messages. */
  where: string;
  identityFile: string | undefined;
  passwordFile: string | undefined;
  agent: string | undefined;
  hostKey: { kind: "ignore" } | { kind: "fingerprint"; fingerprint: string } | { kind: "known_hosts"; file: string };
  connections: number;
  /** How long requests may wait with no answer before their connection is failed. */
  stallTimeoutMs: number;
}

export function sftpSettings(loc: Location, cfg: Record<string, string>, o: ConnectorOptions): SftpSettings {
  const addr = parseSftpLocation(loc);
  const env = o.env ?? {};
  const conflict = (name: string, inLocation: string | number) =>
    new CofferError("USAGE", `location "${loc.raw}": option "${name}"=${cfg[name]} differs from the location's ${inLocation}`);
  if (cfg.user !== undefined && addr.user !== undefined && cfg.user !== addr.user) throw conflict("user", addr.user);
  if (cfg.port !== undefined && addr.port !== undefined && Number(cfg.port) !== addr.port) throw conflict("port", addr.port);
  const user = addr.user ?? cfg.user ?? env.USER ?? env.LOGNAME;
  if (user === undefined || user === "") throw new CofferError("USAGE", `location "${loc.raw}": no user (give USER@ in the location or -o user=NAME)`);
  const port = addr.port ?? (cfg.port !== undefined ? Number(cfg.port) : 22);
  const ignore = cfg.insecure_ignore_host_key === "true";
  if (ignore && cfg.host_key_fingerprint !== undefined) throw new CofferError("USAGE", `location "${loc.raw}": host_key_fingerprint and insecure_ignore_host_key exclude each other`);
  const local = (p: string) => (path.isAbsolute(p) ? p : path.resolve(o.cwd, p));
  let hostKey: SftpSettings["hostKey"];
  if (ignore) hostKey = { kind: "ignore" };
  else if (cfg.host_key_fingerprint !== undefined) hostKey = { kind: "fingerprint", fingerprint: cfg.host_key_fingerprint.replace(/=$/, "") };
  else if (cfg.known_hosts !== undefined) hostKey = { kind: "known_hosts", file: local(cfg.known_hosts) };
  else if (env.HOME !== undefined && env.HOME !== "") hostKey = { kind: "known_hosts", file: path.join(env.HOME, ".ssh", "known_hosts") };
  else throw new CofferError("USAGE", `location "${loc.raw}": no known_hosts file to check the host key against ($HOME is not set): give -o known_hosts=FILE or -o host_key_fingerprint=SHA256:...`);
  const hostPart = addr.host.includes(":") ? `[${addr.host}]` : addr.host;
  return {
    host: addr.host,
    port,
    user,
    path: addr.path,
    where: `sftp://${user}@${hostPart}${port === 22 ? "" : `:${port}`}`,
    identityFile: cfg.identity_file !== undefined ? local(cfg.identity_file) : undefined,
    passwordFile: cfg.password_file !== undefined ? local(cfg.password_file) : undefined,
    agent: env.SSH_AUTH_SOCK !== undefined && env.SSH_AUTH_SOCK !== "" ? env.SSH_AUTH_SOCK : undefined,
    hostKey,
    connections: Number(cfg.connections),
    stallTimeoutMs: numericValue("duration", cfg.timeout!),
  };
}
