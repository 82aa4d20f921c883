import { createRequire } from 'node:module';
import { isatty } from 'node:tty';
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

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
/** `json`: one JSON object a line (pino's own format, for collectors). `pretty`: for people, via pino-pretty. */
export const LOG_FORMATS = ['json', 'pretty'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

export interface LogOptions {
  /** Default: CAIRN_LOG_LEVEL, else info. */
  level?: string | undefined;
  /** Default: CAIRN_LOG_FORMAT, else pretty when the destination is a terminal and json otherwise. */
  format?: LogFormat | undefined;
  /** Default: stderr, so a command's stdout carries only its result (`cairn up`'s banner). */
  destination?: DestinationStream | undefined;
}

/** The level and format a logger would use, checked; throws a sentence naming the variable for a bad one. */
export function resolveLogOptions(options: Pick<LogOptions, 'level' | 'format'> = {}): { level: string; format: LogFormat | undefined } {
  const level = options.level ?? process.env.CAIRN_LOG_LEVEL ?? 'info';
  if (!(LOG_LEVELS as readonly string[]).includes(level)) throw new Error(`CAIRN_LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')}, got "${level}"`);
  const format = options.format ?? (process.env.CAIRN_LOG_FORMAT || undefined);
  if (format !== undefined && !(LOG_FORMATS as readonly string[]).includes(format)) throw new Error(`CAIRN_LOG_FORMAT must be one of ${LOG_FORMATS.join(', ')}, got "${format}"`);
  return { level, format: format as LogFormat | undefined };
}

export function createLogger(options: LogOptions = {}): Logger {
  const { level, format } = resolveLogOptions(options);
  const opts = {
    level,
    redact: { paths: [...REDACTED_PATHS], censor: '[redacted]' },
    base: { service: 'cairn' },
  };
  const toTerminal = options.destination === undefined && isatty(2);
  if ((format ?? (toTerminal ? 'pretty' : 'json')) === 'pretty') {
    // pino redacts before it serialises, so pino-pretty only ever sees '[redacted]'. It runs in this
    // thread (a transport would be a worker: another V8 heap) and is loaded only when asked for.
    const pretty = createRequire(import.meta.url)('pino-pretty') as (o: Record<string, unknown>) => DestinationStream;
    return pino(
      opts,
      pretty({
        destination: options.destination ?? 2,
        sync: true,
        colorize: toTerminal,
        translateTime: 'SYS:HH:MM:ss.l',
        ignore: 'pid,hostname,service',
        singleLine: true,
      }),
    );
  }
  return pino(opts, options.destination ?? pino.destination({ dest: 2, sync: true }));
}
