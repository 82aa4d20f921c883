import { LOG_FORMATS, LOG_LEVELS, resolveLogOptions, type LogFormat, type Logger } from '../lib/log.js';
import { UsageError } from './args.js';

/** The flags of the commands that run a server (`ca start`, `agent start`, `up`). */
export const LOG_OPTIONS = {
  'log-level': { type: 'string' },
  'log-format': { type: 'string' },
} as const;

interface LogFlags {
  'log-level'?: string | undefined;
  'log-format'?: string | undefined;
}

/** --log-level / --log-format over CAIRN_LOG_LEVEL / CAIRN_LOG_FORMAT, checked before anything starts. */
export function logOptionsOf(values: LogFlags): { level: string; format: LogFormat | undefined } {
  const level = values['log-level'];
  if (level !== undefined && !(LOG_LEVELS as readonly string[]).includes(level)) throw new UsageError(`--log-level must be one of ${LOG_LEVELS.join(', ')}, got "${level}"`);
  const format = values['log-format'];
  if (format !== undefined && !(LOG_FORMATS as readonly string[]).includes(format)) throw new UsageError(`--log-format must be one of ${LOG_FORMATS.join(', ')}, got "${format}"`);
  try {
    return resolveLogOptions({ level, format: format as LogFormat | undefined });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}
