import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * An enterprise PKI made with the openssl CLI (not our code): a self-signed root and an issuing CA
 * under it, as a bank would hand over. Files are written into `dir`; paths are returned.
 */
export interface EnterprisePki {
  readonly dir: string;
  /** The self-signed root, PEM (enterprise-root.pem). */
  readonly rootPem: string;
  readonly rootCert: string;
  readonly rootKey: string;
  /** The issuing CA under the root: certificate, key, and certificate + root (the --upstream-ca-cert file). */
  readonly issuingCert: string;
  readonly issuingKey: string;
  readonly issuingChain: string;
}

const openssl = (args: string[], cwd: string): string => execFileSync('openssl', args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

/** An EC P-256 key at `path`. */
export function ecKey(dir: string, name: string, curve = 'prime256v1'): string {
  const path = join(dir, name);
  openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', `ec_paramgen_curve:${curve}`, '-out', path], dir);
  return path;
}

/** A self-signed CA certificate (keyCertSign, cA) valid `days`. */
export function selfSignedCa(dir: string, name: string, subject: string, days: number, extra = 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\n'): { cert: string; key: string } {
  const key = ecKey(dir, `${name}.key`);
  const cnf = join(dir, `${name}.cnf`);
  writeFileSync(cnf, `[req]\ndistinguished_name=dn\nx509_extensions=v3\n[dn]\n[v3]\n${extra}`);
  const cert = join(dir, `${name}.pem`);
  openssl(['req', '-x509', '-new', '-key', key, '-subj', subject, '-days', String(days), '-config', cnf, '-out', cert], dir);
  return { cert, key };
}

/** Signs `csr` (or a new key's CSR when `csr` is undefined) with `issuer`, the extensions given, for `days`. */
export function signWith(dir: string, name: string, issuer: { cert: string; key: string }, opts: { subject?: string; days: number; ext: string; csr?: string; key?: string }): { cert: string; key: string | undefined } {
  let csr = opts.csr;
  let key = opts.key;
  if (!csr) {
    key ??= ecKey(dir, `${name}.key`);
    csr = join(dir, `${name}.csr`);
    const cnf = join(dir, `${name}-req.cnf`);
    writeFileSync(cnf, '[req]\ndistinguished_name=dn\n[dn]\n');
    openssl(['req', '-new', '-key', key, '-subj', opts.subject ?? `/CN=${name}`, '-config', cnf, '-out', csr], dir);
  }
  const ext = join(dir, `${name}.ext`);
  writeFileSync(ext, opts.ext);
  const cert = join(dir, `${name}.pem`);
  openssl(['x509', '-req', '-in', csr, '-CA', issuer.cert, '-CAkey', issuer.key, '-CAcreateserial', '-days', String(opts.days), '-extfile', ext, '-out', cert], dir);
  return { cert, key };
}

export const CA_EXT = 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n';

/** Root (10 years) and issuing CA (5 years) under it. */
export function enterprisePki(dir: string): EnterprisePki {
  const root = selfSignedCa(dir, 'enterprise-root', '/C=US/O=Example Bank/CN=Example Bank Root CA', 3650);
  const issuing = signWith(dir, 'enterprise-issuing', root, { subject: '/C=US/O=Example Bank/CN=Example Bank Issuing CA 1', days: 1825, ext: CA_EXT });
  const chain = join(dir, 'enterprise-issuing-chain.pem');
  writeFileSync(chain, readFileSync(issuing.cert, 'utf8') + readFileSync(root.cert, 'utf8'));
  return { dir, rootPem: readFileSync(root.cert, 'utf8'), rootCert: root.cert, rootKey: root.key, issuingCert: issuing.cert, issuingKey: issuing.key!, issuingChain: chain };
}

/** `openssl verify -CAfile root -untrusted intermediates leaf`: its output, or throws with openssl's message. */
export function verifyWithRoot(dir: string, rootPem: string, chainPem: string, extra: string[] = []): string {
  const blocks = chainPem.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----\n?/g) ?? [];
  const leaf = join(dir, 'verify-leaf.pem');
  const untrusted = join(dir, 'verify-untrusted.pem');
  const root = join(dir, 'verify-root.pem');
  writeFileSync(leaf, blocks[0] ?? '');
  writeFileSync(untrusted, blocks.slice(1).join('\n'));
  writeFileSync(root, rootPem);
  const args = ['verify', ...extra, '-CAfile', root, ...(blocks.length > 1 ? ['-untrusted', untrusted] : []), leaf];
  try {
    return execFileSync('openssl', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    throw new Error(`openssl verify failed: ${(err as { stderr?: string }).stderr ?? (err as Error).message}`);
  }
}
