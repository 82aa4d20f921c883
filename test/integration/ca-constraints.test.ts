import { execFileSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCaCertificate } from '../../ca/authority/ca-certificate.js';
import { createCsr } from '../../lib/pkcs10.js';
import { startTestCa, type TestCa } from '../support/ca.js';
import { storeKind } from '../support/db.js';
import { opensslText, opensslVerify } from '../support/openssl.js';

const TD = 'constrained.test';
const DEBIAN_PYTHON = '/usr/bin/python3';

const csr = (): string => {
  const pair = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return createCsr(pair.privateKey, pair.publicKey).toString('base64');
};

/**
 * Reads the CA certificate's constraints with Debian's python3-cryptography: an independent parser.
 * (Its version in Debian 12, 38, has no chain verifier; newer ones refuse URI name constraints
 * altogether, see the README.)
 */
const PY_EXTENSIONS = `
import json, sys
import cryptography
from cryptography import x509
ca = x509.load_pem_x509_certificate(open(sys.argv[1], 'rb').read())
bc = ca.extensions.get_extension_for_class(x509.BasicConstraints)
nc = ca.extensions.get_extension_for_class(x509.NameConstraints)
names = lambda subtrees: [type(g).__name__ + ':' + g.value for g in (subtrees or [])]
print(json.dumps({
  'basicConstraints': {'critical': bc.critical, 'ca': bc.value.ca, 'pathLength': bc.value.path_length},
  'nameConstraints': {'critical': nc.critical, 'permitted': names(nc.value.permitted_subtrees), 'excluded': names(nc.value.excluded_subtrees)},
}))
`;

describe(`CA certificates: name and path-length constraints, TTL caps by key type (${storeKind()} store)`, () => {
  let ca: TestCa;
  let dir: string;
  let bundlePem: string;

  const openssl = (args: string[]): string => execFileSync('openssl', args, { cwd: dir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  /** A leaf for any URI, signed by openssl with the CA's own key (taken from the running CA). */
  const forgeLeaf = (uri: string, issuerPem: string): string => {
    const name = uri.replace(/[^a-z0-9]/g, '_');
    openssl(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', '/O=forged']);
    writeFileSync(join(dir, `${name}.ext`), `basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=URI:${uri}\n`);
    writeFileSync(join(dir, 'issuer.pem'), issuerPem);
    openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', 'issuer.pem', '-CAkey', 'ca.key', '-set_serial', '0x' + Buffer.from(name).toString('hex').slice(0, 30), '-days', '1', '-extfile', `${name}.ext`, '-out', `${name}.pem`]);
    return openssl(['x509', '-in', `${name}.pem`]);
  };
  const verify = (leafPem: string, caPem: string): { ok: boolean; out: string } => {
    try {
      return { ok: true, out: opensslVerify(leafPem, caPem, ['-x509_strict']) };
    } catch (err) {
      return { ok: false, out: String((err as { stderr?: string }).stderr ?? err) + String((err as { stdout?: string }).stdout ?? '') };
    }
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'cairn-constraints-'));
    ca = await startTestCa();
    expect((await ca.admin('/v1/trust-domains', { body: { name: TD } })).status).toBe(201);
    bundlePem = await (await fetch(`${ca.url}/td/${TD}/bundle.pem`)).text();
    // The CA's private key, for forging leaves with the same key (never logged; a temp file only).
    const signingKey = (await ca.core.authority.active(TD)).x509.template.signingKey;
    writeFileSync(join(dir, 'ca.key'), signingKey.export({ format: 'pem', type: 'pkcs8' }), { mode: 0o600 });
  }, 180_000);
  afterAll(async () => {
    await ca?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('the CA certificate carries pathlen:0 and the URI name constraint of its trust domain (openssl and Debian python3-cryptography agree)', () => {
    const text = opensslText(bundlePem);
    expect(text).toMatch(/X509v3 Basic Constraints: critical\s+CA:TRUE, pathlen:0/);
    expect(text).toMatch(new RegExp(`X509v3 Name Constraints: critical\\s+Permitted:\\s+URI:${TD.replace('.', '\\.')}\\s+Excluded:\\s+URI:\\.${TD.replace('.', '\\.')}\\s`));
    writeFileSync(join(dir, 'bundle.pem'), bundlePem);
    const py = JSON.parse(execFileSync(DEBIAN_PYTHON, ['-c', PY_EXTENSIONS, join(dir, 'bundle.pem')], { encoding: 'utf8' }));
    expect(py).toEqual({
      basicConstraints: { critical: true, ca: true, pathLength: 0 },
      nameConstraints: { critical: true, permitted: [`UniformResourceIdentifier:${TD}`], excluded: [`UniformResourceIdentifier:.${TD}`] },
    });
  });

  it('SVIDs of the trust domain still verify (openssl, -x509_strict), with DNS names too', async () => {
    const res = await ca.admin('/v1/x509-svids', { body: { spiffeId: `spiffe://${TD}/ns/prod/sa/web`, csr: csr(), dnsNames: ['web.example.com'] } });
    expect(res.status).toBe(201);
    const body = (await res.json()) as { certChain: string };
    expect(opensslVerify(body.certChain, bundlePem, ['-x509_strict'])).toContain('OK');
  });

  it('a leaf for another trust domain signed by the same key does not verify; without the constraint it would', () => {
    const unconstrained = openssl(['req', '-x509', '-key', 'ca.key', '-subj', '/O=Cairn/CN=same key, no constraints', '-days', '1',
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
    for (const [uri, violation] of [
      ['spiffe://other.test/w', /permitted subtree violation/],
      // a subdomain is another trust domain: OpenSSL matches the permitted host exactly; the excluded
      // ".<td>" subtree is there for Go, whose matching also admits subdomains
      [`spiffe://evil.${TD}/w`, /(permitted|excluded) subtree violation/],
      [`spiffe://${TD}.evil/w`, /permitted subtree violation/],
    ] as const) {
      const refused = verify(forgeLeaf(uri, bundlePem), bundlePem);
      expect(refused.ok, `${uri} verified under the constrained CA`).toBe(false);
      expect(refused.out).toMatch(violation);
      // the same forgery under a certificate for the same key without the constraint verifies:
      // the refusal above is the name constraint's doing
      expect(verify(forgeLeaf(uri, unconstrained), unconstrained).ok, uri).toBe(true);
    }
    // and a forged leaf in the trust domain itself verifies (the key is the CA's)
    expect(verify(forgeLeaf(`spiffe://${TD}/forged`, bundlePem), bundlePem).ok).toBe(true);
  });

  it('a trust domain named by an IPv4 address gets no URI constraint (Go refuses URIs with IP hosts under any), and its SVIDs verify', async () => {
    const ipTd = '10.1.2.3';
    expect((await ca.admin('/v1/trust-domains', { body: { name: ipTd } })).status).toBe(201);
    const pem = await (await fetch(`${ca.url}/td/${ipTd}/bundle.pem`)).text();
    const text = opensslText(pem);
    expect(text).not.toMatch(/Name Constraints/);
    expect(text).toMatch(/pathlen:0/);
    const res = await ca.admin('/v1/x509-svids', { body: { spiffeId: `spiffe://${ipTd}/w`, csr: csr() } });
    expect(res.status).toBe(201);
    expect(opensslVerify(((await res.json()) as { certChain: string }).certChain, pem, ['-x509_strict'])).toContain('OK');
  });

  it('the constraint can be left out (caNameConstraints: false) for verifiers that refuse URI constraints', async () => {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const base = { trustDomain: TD, keyType: 'ec-p256' as const, privateKey, publicKey, serial: Buffer.from([1, 2, 3]), notBefore: new Date(Date.now() - 1000), notAfter: new Date(Date.now() + 86400_000) };
    const pemOf = (der: Buffer): string => `-----BEGIN CERTIFICATE-----\n${der.toString('base64')}\n-----END CERTIFICATE-----\n`;
    expect(opensslText(pemOf(await createCaCertificate({ ...base, nameConstraints: false })))).not.toMatch(/Name Constraints/);
    expect(opensslText(pemOf(await createCaCertificate(base)))).toMatch(/Name Constraints: critical/);
  });

  it('CA TTLs are capped by key type: RSA-2048 1 year, P-256 3 years, P-384 5 years', async () => {
    const DAY = 86400;
    const cases: [string, number, number][] = [
      ['rsa-2048', 365 * DAY, 366 * DAY],
      ['ec-p256', 3 * 365 * DAY, 3 * 365 * DAY + 1],
      ['ec-p384', 5 * 365 * DAY, 5 * 365 * DAY + 1],
    ];
    for (const [caKeyType, max, over] of cases) {
      const name = `cap-${caKeyType}.test`;
      const refused = await ca.admin('/v1/trust-domains', { body: { name, caKeyType, caTtlSeconds: over } });
      expect(refused.status).toBe(400);
      expect(await refused.json()).toMatchObject({ code: 'invalid_ttl', message: expect.stringContaining(`${caKeyType} keys`) });
      expect((await ca.admin('/v1/trust-domains', { body: { name, caKeyType, caTtlSeconds: max } })).status).toBe(201);
      const patched = await ca.admin(`/v1/trust-domains/${name}`, { method: 'PATCH', body: { caTtlSeconds: over } });
      expect(patched.status).toBe(400);
      // other updates still work
      expect((await ca.admin(`/v1/trust-domains/${name}`, { method: 'PATCH', body: { jwtSvidTtlSeconds: 600 } })).status).toBe(200);
    }
  });

  it('a trust domain stored with a longer CA TTL (from before the caps) gets capped keys', async () => {
    const name = 'legacy-ttl.test';
    expect((await ca.admin('/v1/trust-domains', { body: { name, caKeyType: 'rsa-2048' } })).status).toBe(201);
    await ca.handle.db.query('UPDATE trust_domains SET ca_ttl_seconds = $2 WHERE name = $1', [name, 10 * 365 * 86400]);
    const key = await ca.core.authority.generateKey({ trustDomain: name, kind: 'x509', keyType: 'rsa-2048', ttlSeconds: 10 * 365 * 86400, status: 'prepared' });
    expect((key.notAfter.getTime() - key.createdAt.getTime()) / 1000).toBeLessThanOrEqual(365 * 86400);
    expect(opensslText(`-----BEGIN CERTIFICATE-----\n${key.certificate!.toString('base64')}\n-----END CERTIFICATE-----\n`)).toMatch(/pathlen:0/);
  });
});
