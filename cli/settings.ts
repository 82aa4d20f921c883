import { accessSync, constants, statSync } from 'node:fs';
import { isIP } from 'node:net';
import { parseDuration } from '../lib/duration.js';
import { ConfigError } from './flags.js';

/**
 * Checks of configuration values, run before a server opens anything (store, sockets, ports). Each
 * names the setting as the user gave it: `--listen` or `CAIRN_LISTEN`, say.
 */

/** `HOST:PORT` or `[IPv6]:PORT`; an empty host means every interface. */
export function listenAddress(text: string, setting: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(text);
  if (!m) throw new ConfigError(`${setting} must be HOST:PORT (e.g. 127.0.0.1:8080 or [::1]:8080), got "${text}"`);
  const host = m[1] ?? (m[2] || '0.0.0.0');
  const port = Number(m[3]);
  if (port > 65535) throw new ConfigError(`${setting}: port ${port} is out of range (0-65535)`);
  if (m[1] !== undefined && isIP(host) !== 6) throw new ConfigError(`${setting}: "${host}" in brackets is not an IPv6 address`);
  if (m[1] === undefined && isIP(host) === 0 && !isHostName(host)) throw new ConfigError(`${setting}: "${host}" is not an IP address or host name`);
  return { host, port };
}

/** An absolute URL with one of `schemes` (e.g. ['https:']), no credentials, query or fragment. */
export function urlSetting(text: string, setting: string, schemes: readonly string[]): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new ConfigError(`${setting} must be an absolute URL (${schemes.map((s) => `${s}//…`).join(' or ')}), got "${text}"`);
  }
  if (!schemes.includes(url.protocol)) throw new ConfigError(`${setting} must use ${schemes.map((s) => s.slice(0, -1)).join(' or ')}, got "${text}"`);
  if (url.username || url.password || url.search || url.hash) throw new ConfigError(`${setting} must be a base URL without credentials, query or fragment, got "${text}"`);
  return text;
}

/** A PostgreSQL connection string; the message never repeats it (it may hold a password). */
export function databaseUrl(text: string, setting: string): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new ConfigError(`${setting} is not a URL (want postgres://USER:PASSWORD@HOST:PORT/DATABASE)`);
  }
  if (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:') throw new ConfigError(`${setting} must be a postgres:// or postgresql:// URL, got the scheme "${url.protocol}"`);
  return text;
}

/** A file that must exist and be readable now. */
export function readableFile(path: string, setting: string): string {
  try {
    if (!statSync(path).isFile()) throw new ConfigError(`${setting}: ${path} is not a regular file`);
    accessSync(path, constants.R_OK);
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    throw new ConfigError(`${setting}: cannot read ${path} (${code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : (code ?? (err as Error).message)})`);
  }
  return path;
}

/** A DNS name or an IP address for a certificate's subjectAltName. */
export function hostNameOrIp(text: string, setting: string): string {
  if (isIP(text) !== 0 || isHostName(text)) return text;
  throw new ConfigError(`${setting}: "${text}" is not a DNS name or an IP address`);
}

/** A duration such as 90s, 10m, 1h; in milliseconds. */
export function durationMs(text: string, setting: string): number {
  try {
    return parseDuration(text) * 1000;
  } catch {
    throw new ConfigError(`${setting} must be a duration like 30s, 5m or 1h, got "${text}"`);
  }
}

function isHostName(text: string): boolean {
  return text.length <= 253 && /^(?=.{1,253}$)([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?)*\.?$/.test(text);
}
