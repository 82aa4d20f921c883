import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { resolve } from 'node:path';
import { UsageError } from './args.js';

/** Where the CLI finds things: flags, then CAIRN_* environment, then the local defaults. */
export function dataDirOf(flag: string | undefined): string {
  return resolve(flag ?? process.env.CAIRN_DATA_DIR ?? '.cairn');
}

export const DEFAULT_HTTP_PORT = 8080;
export const DEFAULT_TLS_PORT = 8443;

/** What `cairn up` recorded in <data-dir>/endpoints.json; empty when absent or unreadable. */
export function recordedEndpoints(dataDir: string): { caUrl?: string; socket?: string } {
  const file = join(dataDir, 'endpoints.json');
  if (!existsSync(file)) return {};
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as { caUrl?: string; socket?: string };
  } catch {
    return {};
  }
}

export function serverOf(flag: string | undefined, dataDir: string): string {
  if (flag) return flag.replace(/\/+$/, '');
  if (process.env.CAIRN_SERVER) return process.env.CAIRN_SERVER.replace(/\/+$/, '');
  return recordedEndpoints(dataDir).caUrl ?? `http://127.0.0.1:${DEFAULT_HTTP_PORT}`;
}

export function adminTokenOf(dataDir: string): string {
  const fromEnv = process.env.CAIRN_ADMIN_TOKEN;
  if (fromEnv) return fromEnv.trim();
  const file = join(dataDir, 'admin-token');
  if (existsSync(file)) return readFileSync(file, 'utf8').trim();
  throw new CliError('unauthenticated', `no admin token: set CAIRN_ADMIN_TOKEN or run where ${file} exists`);
}

export class CliError extends Error {
  override readonly name = 'CliError';
  constructor(
    readonly code: string,
    message: string,
    readonly status?: number,
  ) {
    super(message);
  }
}

/** An input file named on the command line; an unreadable one is a usage error, not a crash. */
export function readInputFile(path: string, what: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw new UsageError(`cannot read ${what} ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

export interface AdminClient {
  request<T>(method: string, path: string, body?: unknown): Promise<T>;
}

/** The admin client for the common flags: --server / CAIRN_SERVER / endpoints.json, and the admin token. */
export function adminClientFor(values: { server?: string | undefined; 'data-dir'?: string | undefined }): AdminClient {
  const dataDir = dataDirOf(values['data-dir']);
  return adminClient(serverOf(values.server, dataDir), adminTokenOf(dataDir));
}

export function adminClient(server: string, token: string): AdminClient {
  return {
    async request<T>(method: string, path: string, body?: unknown): Promise<T> {
      let res: Response;
      try {
        res = await fetch(server + path, {
          method,
          headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
          ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        });
      } catch (err) {
        throw new CliError('unreachable', `cannot reach the CA at ${server}: ${(err as Error).cause ? String((err as Error & { cause: Error }).cause.message) : (err as Error).message}`);
      }
      if (res.status === 204) return undefined as T;
      const text = await res.text();
      let payload: unknown;
      try {
        payload = text ? JSON.parse(text) : undefined;
      } catch {
        payload = undefined;
      }
      if (!res.ok) {
        const e = (payload ?? {}) as { code?: string; message?: string };
        throw new CliError(e.code ?? `http_${res.status}`, e.message ?? `the CA answered ${res.status}`, res.status);
      }
      return payload as T;
    },
  };
}
