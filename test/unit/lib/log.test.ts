import { spawnSync } from 'node:child_process';
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger, resolveLogOptions } from '../../../lib/log.js';
import { registerLogSource } from '../../support/logs.js';

const SECRET = 'cairn1.abcdefghijklmnop.' + 'S'.repeat(43);

function sink(): { stream: Writable; text: () => string } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      chunks.push(chunk.toString('utf8'));
      cb();
    },
  });
  const text = () => chunks.join('');
  registerLogSource(text);
  return { stream, text };
}

describe('logger', () => {
  it('pretty format: one human line per entry (time, level, message, fields), secrets still redacted', () => {
    const out = sink();
    const logger = createLogger({ level: 'info', format: 'pretty', destination: out.stream });
    logger.info({ event: 'token.created', token: SECRET, nested: { secret: SECRET, privateKey: 'x' } }, 'one-time token created');
    logger.debug('not at info');
    const lines = out.text().trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^\[\d\d:\d\d:\d\d\.\d{3}\] INFO: one-time token created \{.*"event":"token.created".*\}$/);
    expect(lines[0]).toContain('"token":"[redacted]"');
    expect(out.text()).not.toContain(SECRET);
    expect(out.text()).not.toContain('"level"');
  });

  it('json format: pino lines, redacted', () => {
    const out = sink();
    createLogger({ level: 'info', format: 'json', destination: out.stream }).warn({ token: SECRET }, 'refused');
    expect(JSON.parse(out.text())).toMatchObject({ level: 40, msg: 'refused', token: '[redacted]' });
  });

  it('CAIRN_LOG_LEVEL and CAIRN_LOG_FORMAT are checked, naming the variable', () => {
    const saved = { level: process.env.CAIRN_LOG_LEVEL, format: process.env.CAIRN_LOG_FORMAT };
    try {
      process.env.CAIRN_LOG_LEVEL = 'loud';
      expect(() => resolveLogOptions()).toThrow(/CAIRN_LOG_LEVEL must be one of fatal, error, warn, info, debug, trace, silent, got "loud"/);
      process.env.CAIRN_LOG_LEVEL = 'debug';
      process.env.CAIRN_LOG_FORMAT = 'xml';
      expect(() => resolveLogOptions()).toThrow(/CAIRN_LOG_FORMAT must be one of json, pretty/);
      process.env.CAIRN_LOG_FORMAT = 'pretty';
      expect(resolveLogOptions()).toEqual({ level: 'debug', format: 'pretty' });
      expect(resolveLogOptions({ level: 'warn', format: 'json' })).toEqual({ level: 'warn', format: 'json' });
    } finally {
      for (const [k, v] of [['CAIRN_LOG_LEVEL', saved.level], ['CAIRN_LOG_FORMAT', saved.format]] as const) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    }
  });

  it('logs go to stderr, pretty on a terminal and JSON otherwise', () => {
    const code = `import { createLogger } from ${JSON.stringify(new URL('../../../lib/log.ts', import.meta.url).pathname)}; createLogger().info({ n: 1 }, 'hello');`;
    const env = { ...process.env, CAIRN_LOG_FORMAT: '', CAIRN_LOG_LEVEL: 'info' };
    const piped = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { encoding: 'utf8', env });
    expect(piped.stdout).toBe('');
    expect(JSON.parse(piped.stderr)).toMatchObject({ level: 30, msg: 'hello', n: 1 });
    // a real terminal (script(1) gives the command a pty); stdout and stderr both reach it
    const tty = spawnSync('script', ['-qec', `${process.execPath} --import tsx --input-type=module -e ${JSON.stringify(code)}`, '/dev/null'], { encoding: 'utf8', env });
    const plain = tty.stdout.replace(/\x1b\[[0-9;]*m/g, '');
    expect(plain).toMatch(/^\[\d\d:\d\d:\d\d\.\d{3}\] INFO: hello \{"n":1\}\r?\n$/);
  });
});
