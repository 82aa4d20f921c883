import { createLogger, LOG_FORMATS, LOG_LEVELS, resolveLogOptions, type LogFormat, type Logger } from '../lib/log.js';
import { reexecWithNodeFlags } from '../node-agent/platform/peercred.js';
import { UsageError } from './flags.js';

interface LogFlags {
  'log-level'?: string | undefined;
  'log-format'?: string | undefined;
}

/**
 * --log-level / --log-format over CAIRN_LOG_LEVEL / CAIRN_LOG_FORMAT, checked before anything starts
 * (the flag tables of ca start, agent start and up list the same choices: cli/specs/common.ts LOG_FLAGS).
 */
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

/**
 * V8's young generation grows to 2 × 16 MB semi-spaces in a burst of allocation (an agent issuing
 * its SVIDs) and stays committed while the process idles: a mostly idle agent holding 1,000
 * identities sat at ~94 MB instead of ~75 MB. A 1 MB semi-space costs a few more scavenges in bursts.
 */
export const LEAN_NODE_FLAGS = ['--max-semi-space-size=1'] as const;

/**
 * For the long-lived, mostly idle processes (`agent start`, `up`): restarts this process in place
 * with LEAN_NODE_FLAGS unless the user set them (NODE_OPTIONS or node's command line), then makes
 * the logger. Call it once the command line is known to be good and before anything is printed.
 */
export function leanProcessLogger(values: LogFlags): Logger {
  const options = logOptionsOf(values);
  const notRestarted = reexecWithNodeFlags(LEAN_NODE_FLAGS);
  const logger = createLogger(options);
  logger.debug({ pid: process.pid, execArgv: process.execArgv, nodeOptions: process.env.NODE_OPTIONS }, 'node flags');
  if (notRestarted) logger.warn({ reason: notRestarted, flags: LEAN_NODE_FLAGS }, "could not restart with the V8 flags that keep an idle process small; running with V8's defaults");
  return logger;
}
