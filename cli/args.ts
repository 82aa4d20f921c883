import { parseArgs, type ParseArgsConfig } from 'node:util';

export type Options = NonNullable<ParseArgsConfig['options']>;

export const COMMON_OPTIONS = {
  server: { type: 'string' },
  'ca-pin': { type: 'string' },
  'ca-file': { type: 'string' },
  'data-dir': { type: 'string' },
  // admin by X.509-SVID instead of the admin token (the TLS listener only)
  'svid-dir': { type: 'string' },
  'svid-from-socket': { type: 'boolean' },
  json: { type: 'boolean', default: false },
  help: { type: 'boolean', short: 'h', default: false },
} as const satisfies Options;

/** @internal (its inferred node:util return type cannot be named in a declaration file) */
export function parse<T extends Options>(argv: string[], options: T) {
  return parseArgs({ args: argv, options: { ...COMMON_OPTIONS, ...options }, allowPositionals: true, strict: true });
}

export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/**
 * A setting (flag, environment variable or file) whose value cannot work: found before anything is
 * opened, printed as one `error:` line naming the setting, exit 2 (a restart will not fix it).
 */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}
