import { pino, type Logger, type DestinationStream } from 'pino';

export type { Logger } from 'pino';

/**
 * Every secret-bearing field name we use, redacted once here. Log messages are constant strings;
 * variables travel in fields, so a field name decides whether a value can be printed.
 */
export const REDACTED_PATHS = [
  'token',
  'secret',
  'adminToken',
  'privateKey',
  'kek',
  'password',
  'authorization',
  '*.token',
  '*.secret',
  '*.adminToken',
  '*.privateKey',
  '*.kek',
  '*.password',
  '*.authorization',
  'req.headers.authorization',
  'req.headers.cookie',
  'headers.authorization',
] as const;

export interface LogOptions {
  level?: string;
  destination?: DestinationStream;
}

export function createLogger(options: LogOptions = {}): Logger {
  const opts = {
    level: options.level ?? process.env.CAIRN_LOG_LEVEL ?? 'info',
    redact: { paths: [...REDACTED_PATHS], censor: '[redacted]' },
    base: { service: 'cairn' },
  };
  return options.destination ? pino(opts, options.destination) : pino(opts);
}
