import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebCertDir, WEB_FILE_MAX_BYTES } from '../../../ca/bundle-endpoint/web-files.js';
import { startCa } from '../../../ca/main.js';
import { CairnError } from '../../../lib/errors.js';

const codeOf = (fn: () => unknown): { code: string; message: string } => {
  try {
    fn();
  } catch (err) {
    if (err instanceof CairnError) return { code: err.code, message: err.message };
    throw err;
  }
  throw new Error('no error');
};

describe('the web certificate directory (https_web files an admin may name)', () => {
  let dir: string;
  let web: WebCertDir;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'cairn-webdir-'));
    const ossl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    for (const n of ['a', 'b']) ossl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${n}.key`, '-out', `${n}.pem`, '-subj', `/CN=${n}`, '-days', '1');
    mkdirSync(join(dir, 'web', 'sub'), { recursive: true });
    for (const f of ['a.pem', 'a.key', 'b.key']) copyFileSync(join(dir, f), join(dir, 'web', f));
    symlinkSync(join(dir, 'web', 'a.pem'), join(dir, 'web', 'sub', 'inside-link.pem'));
    copyFileSync(join(dir, 'b.key'), join(dir, 'unreadable.key'));
    chmodSync(join(dir, 'unreadable.key'), 0o000);
    web = new WebCertDir(join(dir, 'web'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('loads a certificate and its key, relative or absolute inside, through links that stay inside', () => {
    const pair = web.loadPair('a.pem', join(dir, 'web', 'a.key'));
    expect(pair.cert).toMatch(/^-----BEGIN CERTIFICATE-----/);
    expect(pair.digest).toMatch(/^[0-9a-f]{64}$/);
    expect(web.loadPair('./sub/inside-link.pem', 'a.key').digest).toBe(pair.digest);
  });

  it('refuses everything outside alike, existing or not, readable or not', () => {
    const names = ['/etc/shadow', '/etc/no-such-file', join(dir, 'a.key'), join(dir, 'unreadable.key'), '../a.key', '../unreadable.key', 'sub/../../a.key', '..', '', 'a\0.key', 'sub\\..\\a.key'];
    const answers = names.map((n) => codeOf(() => web.loadPair('a.pem', n)));
    for (const a of answers) expect(a.code).toBe('web_certificate_file_not_allowed');
    expect(new Set(answers.map((a) => a.message)).size).toBe(1);
  });

  it('tells what is wrong with files inside, without their contents', () => {
    writeFileSync(join(dir, 'web', 'big.pem'), 'x'.repeat(WEB_FILE_MAX_BYTES + 1));
    writeFileSync(join(dir, 'web', 'junk.key'), 'not a key SECRET-MARKER');
    const cases: [string, string, RegExp][] = [
      ['a.pem', 'b.key', /b\.key is not the key of the certificate in a\.pem/],
      ['a.pem', 'missing.key', /missing\.key: no such file/],
      ['a.key', 'a.key', /must hold PEM certificates only/],
      ['big.pem', 'a.key', /larger than/],
      ['a.pem', 'junk.key', /junk\.key is not an unencrypted PEM private key/],
      ['sub', 'a.key', /not a regular file/],
    ];
    for (const [cert, key, message] of cases) {
      const got = codeOf(() => web.loadPair(cert, key));
      expect(got.code).toBe('web_certificate_invalid');
      expect(got.message).toMatch(message);
      expect(got.message).not.toContain('SECRET-MARKER');
    }
  });

  it('with no directory configured, refuses with the setting to use', () => {
    const got = codeOf(() => new WebCertDir(undefined).loadPair('a.pem', 'a.key'));
    expect(got.code).toBe('web_certificate_file_not_allowed');
    expect(got.message).toMatch(/--web-cert-dir, CAIRN_WEB_CERT_DIR/);
  });

  it('a CA started with a --web-cert-dir that is not a directory stops with one sentence', async () => {
    expect(() => new WebCertDir(join(dir, 'a.pem'))).toThrow(/is not a directory/);
    await expect(startCa({ dataDir: join(dir, 'data'), host: '127.0.0.1', port: 0, tlsPort: 0, webCertDir: join(dir, 'nowhere') })).rejects.toThrow(/^--web-cert-dir .*nowhere: no such directory$/);
    // found before the CA makes anything (a generated KEK, the embedded store)
    expect(existsSync(join(dir, 'data'))).toBe(false);
  });
});
