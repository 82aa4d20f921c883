import { Writable } from 'node:stream';
import { createLogger, type Logger } from '../../lib/log.js';

/**
 * Every log text a test file produced: pino loggers made here and the stderr of CLI processes it ran.
 * test/support/setup.ts scans it for secrets after each file.
 */
const sources: (() => string)[] = [];

export function registerLogSource(text: () => string): void {
  sources.push(text);
}

export function allLogText(): string {
  return sources.map((t) => t()).join('\n');
}

/** What a secret looks like in Cairn: admin tokens, one-time tokens with their secret part, private keys. */
export const SECRET_PATTERNS: readonly RegExp[] = [
  /cairn-admin\.[A-Za-z0-9]{43}/,
  /cairn1\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{20,}/,
  /-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----/,
  /"d"\s*:\s*"[A-Za-z0-9_-]{20,}"/,
];

/** A real pino logger whose lines the test can read back (to prove secrets never reach logs). */
export function capturingLogger(): { logger: Logger; lines: () => string[]; text: () => string } {
  const chunks: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      chunks.push(chunk.toString('utf8'));
      cb();
    },
  });
  const logger = createLogger({ level: 'debug', destination: sink });
  const text = () => chunks.join('');
  registerLogSource(text);
  return { logger, text, lines: () => text().split('\n').filter(Boolean) };
}
