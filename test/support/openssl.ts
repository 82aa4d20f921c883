import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Runs `openssl verify` on a leaf (PEM) against a bundle (PEM); returns its output, throws on failure. */
export function opensslVerify(leafPem: string, bundlePem: string, extra: string[] = []): string {
  const dir = mkdtempSync(join(tmpdir(), 'cairn-ossl-'));
  try {
    writeFileSync(join(dir, 'leaf.pem'), leafPem);
    writeFileSync(join(dir, 'ca.pem'), bundlePem);
    return execFileSync('openssl', ['verify', ...extra, '-CAfile', join(dir, 'ca.pem'), join(dir, 'leaf.pem')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export function opensslText(pem: string): string {
  return execFileSync('openssl', ['x509', '-noout', '-text'], { input: pem, encoding: 'utf8' });
}
