import { join } from 'node:path';
import { UsageError } from './flags.js';

/**
 * Where admin verbs send the admin token, and how they trust the server before they do. The token
 * crosses a network only inside TLS: to an https server verified by a pin (the sha256 of the CA's
 * TLS authority key, as join tokens carry it), a CA file, or the system's roots; plain HTTP only to
 * a loopback address.
 */
export interface AdminTarget {
  /** Base URL without a trailing slash. */
  readonly server: string;
  /** Where `server` came from, for error messages: `--server`, `CAIRN_SERVER`, the endpoints file, the default. */
  readonly serverSource: string;
  /** For https only; absent → the system's roots with a host-name check. */
  readonly trust?: AdminTrust | undefined;
}

export type AdminTrust =
  | { readonly kind: 'pin'; readonly pin: string; readonly source: string }
  | { readonly kind: 'file'; readonly file: string; readonly source: string };

export interface AdminTargetFlags {
  readonly server?: string | undefined;
  readonly 'ca-pin'?: string | undefined;
  readonly 'ca-file'?: string | undefined;
}

/** What `cairn up` records in <data-dir>/endpoints.json that admin verbs use. */
export interface RecordedAdminEndpoints {
  readonly caUrl?: string | undefined;
  readonly caTlsUrl?: string | undefined;
  readonly caPin?: string | undefined;
}

export const DEFAULT_ADMIN_TLS_URL = 'https://127.0.0.1:8443';
export const DEFAULT_ADMIN_LOOPBACK_URL = 'http://127.0.0.1:8080';

const PIN = /^sha256:[A-Za-z0-9_-]{43}$/;

function checkedPin(pin: string, source: string): string {
  if (!PIN.test(pin)) throw new UsageError(`${source} must be sha256:<43 base64url characters>, as \`cairn ca pin\` prints it; got "${pin}"`);
  return pin;
}

/** The trust named on the command line, else in CAIRN_CA_FILE / CAIRN_CA_PIN. */
function explicitTrust(flags: AdminTargetFlags, env: NodeJS.ProcessEnv): (AdminTrust & { fromFlag: boolean }) | undefined {
  if (flags['ca-pin'] !== undefined && flags['ca-file'] !== undefined) throw new UsageError('--ca-pin and --ca-file are alternatives: give one');
  if (flags['ca-pin'] !== undefined) return { kind: 'pin', pin: checkedPin(flags['ca-pin'], '--ca-pin'), source: '--ca-pin', fromFlag: true };
  if (flags['ca-file'] !== undefined) return { kind: 'file', file: flags['ca-file'], source: '--ca-file', fromFlag: true };
  if (env.CAIRN_CA_PIN && env.CAIRN_CA_FILE) throw new UsageError('CAIRN_CA_PIN and CAIRN_CA_FILE are both set: keep one');
  if (env.CAIRN_CA_PIN) return { kind: 'pin', pin: checkedPin(env.CAIRN_CA_PIN, 'CAIRN_CA_PIN'), source: 'CAIRN_CA_PIN', fromFlag: false };
  if (env.CAIRN_CA_FILE) return { kind: 'file', file: env.CAIRN_CA_FILE, source: 'CAIRN_CA_FILE', fromFlag: false };
  return undefined;
}

function parsedUrl(text: string, source: string): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new UsageError(`${source} must be a URL such as ${DEFAULT_ADMIN_TLS_URL}, got "${text}"`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new UsageError(`${source} must be an https:// (or, on loopback, http://) URL, got "${text}"`);
  return url;
}

/**
 * Resolves the admin target: the server from --server, CAIRN_SERVER, the endpoints file (its TLS URL
 * and pin), else the local defaults; the trust from --ca-pin / --ca-file, CAIRN_CA_PIN / CAIRN_CA_FILE,
 * else the endpoints file's pin. Throws a usage error for contradictory or malformed settings. (The
 * client refuses plain HTTP to anything but loopback: see adminClient.)
 */
export function resolveAdminTarget(flags: AdminTargetFlags, dataDir: string, recorded: RecordedAdminEndpoints, env: NodeJS.ProcessEnv = process.env): AdminTarget {
  const explicit = explicitTrust(flags, env);
  const file = join(dataDir, 'endpoints.json');
  const recordedPin = recorded.caPin && PIN.test(recorded.caPin) ? { kind: 'pin' as const, pin: recorded.caPin, source: `caPin in ${file}` } : undefined;

  let server: string;
  let serverSource: string;
  if (flags.server) [server, serverSource] = [flags.server, '--server'];
  else if (env.CAIRN_SERVER) [server, serverSource] = [env.CAIRN_SERVER, 'CAIRN_SERVER'];
  else if (recorded.caTlsUrl && (explicit ?? recordedPin)) [server, serverSource] = [recorded.caTlsUrl, `caTlsUrl in ${file}`];
  else if (recorded.caUrl) [server, serverSource] = [recorded.caUrl, `caUrl in ${file}`];
  else if (explicit) [server, serverSource] = [DEFAULT_ADMIN_TLS_URL, 'the default'];
  else [server, serverSource] = [DEFAULT_ADMIN_LOOPBACK_URL, 'the default'];

  const url = parsedUrl(server, serverSource);
  server = server.replace(/\/+$/, '');
  if (url.protocol === 'https:') {
    const trust = explicit ?? recordedPin;
    return { server, serverSource, trust: trust && stripFlag(trust) };
  }
  if (explicit?.fromFlag) throw new UsageError(`${explicit.source} applies to an https server, but ${serverSource} is ${server}: use the CA's TLS URL (https://HOST:8443)`);
  return { server, serverSource };
}

function stripFlag(trust: AdminTrust & { fromFlag?: boolean }): AdminTrust {
  return trust.kind === 'pin' ? { kind: 'pin', pin: trust.pin, source: trust.source } : { kind: 'file', file: trust.file, source: trust.source };
}
