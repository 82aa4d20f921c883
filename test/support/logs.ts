import { Writable } from 'node:stream';
import { createLogger, type Logger } from '../../lib/log.js';

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
  return { logger, text, lines: () => text().split('\n').filter(Boolean) };
}
