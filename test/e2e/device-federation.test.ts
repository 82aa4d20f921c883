import { createPublicKey, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { subjectPublicKeyFromDer } from '../../ca/issuance/spki.js';
import { generateKeyAndCsr } from '../../lib/pkcs10.js';
import { derToPem } from '../../spiffe/bundle/bundle.js';
import { startTestCa, type TestCa } from '../support/ca.js';
import { referenceLeaf, testCaCertificate, type TestCaCert } from '../support/certs.js';
import { storeKind } from '../support/db.js';
import { opensslVerify } from '../support/openssl.js';
import { runCairnAsync } from '../support/processes.js';

const TD = 'iot.test';
/** Not hosted here: its bundle is set statically (cairn bundle set). */
const FOREIGN = 'partner.test';
/** Hosted by the same CA: federated with without any bundle set. */
const HOSTED = 'neighbour.test';
const DEVICE = `spiffe://${TD}/gateway/7`;

/**
 * Issue 15, delivery to agentless devices: a workload credential made with `--federates-with` carries
 * the foreign trust domains to the device's node record; `cairn bootstrap` and every `cairn renew`
 * then write `federated/<td>.pem` from what the CA answers, so a foreign bundle replaced on the CA
 * reaches the device at its next renewal. `openssl verify` judges the files.
 */
describe(`agentless devices get the foreign bundles they federate with (${storeKind()} store)`, () => {
  const dir = mkdtempSync(join(tmpdir(), 'cairn-devfed-'));
  const device = join(dir, 'device');
  let ca: TestCa;
  let env: Record<string, string>;
  let partner: TestCaCert;
  let partner2: TestCaCert;
  const cairn = (...args: string[]) => runCairnAsync(args, env);
  const file = (name: string, text: string): string => {
    const path = join(dir, name);
    writeFileSync(path, text);
    return path;
  };
  /** A leaf of `issuer` (an X.509-SVID of the foreign trust domain), PEM. */
  const foreignLeaf = async (issuer: TestCaCert): Promise<string> => {
    const key = generateKeyAndCsr();
    const subjectKey = subjectPublicKeyFromDer(createPublicKey(key.privateKey).export({ format: 'der', type: 'spki' }));
    const now = Date.now();
    const leaf = await referenceLeaf(issuer, { spiffeId: `spiffe://${FOREIGN}/api`, serial: randomBytes(16), notBefore: new Date(now - 60_000), notAfter: new Date(now + 3600_000), dnsNames: [], publicKey: subjectKey }, subjectKey);
    return derToPem(leaf);
  };
  const federatedFile = (td: string): string => join(device, 'federated', `${td}.pem`);

  beforeAll(async () => {
    partner = await testCaCertificate(FOREIGN);
    partner2 = await testCaCertificate(FOREIGN);
    ca = await startTestCa();
    env = { CAIRN_SERVER: ca.url, CAIRN_ADMIN_TOKEN: ca.adminToken, CAIRN_DATA_DIR: ca.dataDir };
    for (const name of [TD, HOSTED]) expect((await cairn('trust-domain', 'create', name)).status).toBe(0);
    const set = await cairn('bundle', 'set', '--trust-domain', TD, '--foreign', FOREIGN, '--file', file('partner-1.pem', derToPem(partner.der)));
    expect(set.status, set.stderr).toBe(0);
  }, 120_000);

  afterAll(async () => {
    await ca?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a credential for a foreign trust domain with no bundle is refused as an entry would be', async () => {
    const token = await cairn('token', 'create', '--trust-domain', TD, '--spiffe-id', DEVICE, '--federates-with', 'nowhere.test');
    const entry = await cairn('entry', 'create', '--spiffe-id', `spiffe://${TD}/web`, '--parent-id', `spiffe://${TD}/node`, '--selector', 'unix:uid:0', '--federates-with', 'nowhere.test');
    expect(token.status).toBe(1);
    expect(entry.status).toBe(1);
    expect(token.stderr).toMatch(/^error: unknown_federated_trust_domain: --federates-with: nowhere\.test is neither/m);
    expect(entry.stderr).toMatch(/unknown_federated_trust_domain/);
    // the API says the same, with the entries' code; a join token takes no federatesWith
    const res = await ca.admin('/v1/tokens', { body: { trustDomain: TD, spiffeId: DEVICE, federatesWith: ['nowhere.test'] } });
    expect(res.status).toBe(400);
    expect((await res.json()).code).toBe('unknown_federated_trust_domain');
    const own = await ca.admin('/v1/tokens', { body: { trustDomain: TD, spiffeId: DEVICE, federatesWith: [TD] } });
    expect(own.status).toBe(400);
    expect((await own.json()).code).toBe('invalid_trust_domain');
    const join = await ca.admin('/v1/tokens', { body: { trustDomain: TD, federatesWith: [FOREIGN] } });
    expect(join.status).toBe(400);
    expect((await join.json()).code).toBe('invalid_request');
    const cli = await cairn('token', 'create', '--trust-domain', TD, '--federates-with', FOREIGN);
    expect(cli.status).not.toBe(0);
    expect(cli.stderr).toMatch(/^error: .*--federates-with/m);
  });

  it('bootstrap writes federated/<td>.pem; a replaced foreign bundle arrives at the next renewal; one deleted is removed', { timeout: 120_000 }, async () => {
    const created = await cairn('token', 'create', '--trust-domain', TD, '--spiffe-id', DEVICE, '--federates-with', FOREIGN, '--federates-with', HOSTED, '--json');
    expect(created.status, created.stderr).toBe(0);
    const { token, federatesWith } = JSON.parse(created.stdout) as { token: string; federatesWith: string[] };
    expect(federatesWith).toEqual([HOSTED, FOREIGN].sort());

    const boot = await runCairnAsync(['bootstrap', '--token', token, '--write', device], {});
    expect(boot.status, boot.stderr).toBe(0);
    expect(boot.stderr).toContain('federated/');
    // exactly the bundle set for the foreign trust domain, and the published bundle of the hosted one
    expect(readFileSync(federatedFile(FOREIGN), 'utf8')).toBe(derToPem(partner.der));
    const hosted = await cairn('bundle', 'show', '--trust-domain', HOSTED, '--format', 'pem');
    expect(hosted.status, hosted.stderr).toBe(0);
    expect(readFileSync(federatedFile(HOSTED), 'utf8').trim()).toBe(hosted.stdout.trim());
    // an independent verifier accepts a foreign SVID with only the device's file
    expect(opensslVerify(await foreignLeaf(partner), readFileSync(federatedFile(FOREIGN), 'utf8'))).toContain('OK');
    // and the device's own SVID still verifies against its own bundle.pem, not against the foreign one
    const own = readFileSync(join(device, 'svid.pem'), 'utf8');
    expect(opensslVerify(own, readFileSync(join(device, 'bundle.pem'), 'utf8'))).toContain('OK');
    expect(() => opensslVerify(own, readFileSync(federatedFile(FOREIGN), 'utf8'))).toThrow();

    // the foreign trust domain rotates: its new bundle reaches the device at its next renewal
    const set = await cairn('bundle', 'set', '--trust-domain', TD, '--foreign', FOREIGN, '--file', file('partner-2.pem', derToPem(partner2.der)));
    expect(set.status, set.stderr).toBe(0);
    const renewed = await runCairnAsync(['renew', '--dir', device, '--json'], {});
    expect(renewed.status, renewed.stderr).toBe(0);
    expect(JSON.parse(renewed.stdout).federatedTrustDomains).toEqual([HOSTED, FOREIGN].sort());
    expect(readFileSync(federatedFile(FOREIGN), 'utf8')).toBe(derToPem(partner2.der));
    expect(opensslVerify(await foreignLeaf(partner2), readFileSync(federatedFile(FOREIGN), 'utf8'))).toContain('OK');
    // a leaf of the replaced authority is no longer accepted with the device's file
    const oldLeaf = await foreignLeaf(partner);
    expect(() => opensslVerify(oldLeaf, readFileSync(federatedFile(FOREIGN), 'utf8'))).toThrow();

    // a bundle a device federates with is not deleted unless forced, as for entries
    const inUse = await cairn('bundle', 'delete', '--trust-domain', TD, '--foreign', FOREIGN);
    expect(inUse.status).toBe(1);
    expect(inUse.stderr).toMatch(new RegExp(`^error: federated_bundle_in_use: 1 agentless device of ${TD} federate with ${FOREIGN} \\(e\\.g\\. ${DEVICE.replace(/[./]/g, '\\$&')}\\).*pass --force`, 'm'));
    // deleted on the CA (forced): the next renewal drops the file, as `svid watch --write` does
    const deleted = await cairn('bundle', 'delete', '--trust-domain', TD, '--foreign', FOREIGN, '--force');
    expect(deleted.status, deleted.stderr).toBe(0);
    const again = await runCairnAsync(['renew', '--dir', device], {});
    expect(again.status, again.stderr).toBe(0);
    expect(existsSync(federatedFile(FOREIGN))).toBe(false);
    expect(existsSync(federatedFile(HOSTED))).toBe(true);
  });

  it('a device whose credential federates with nothing gets no federated/ files', async () => {
    const plain = join(dir, 'plain');
    const { token } = await (await ca.admin('/v1/tokens', { body: { trustDomain: TD, spiffeId: `spiffe://${TD}/plain` } })).json() as { token: string };
    expect((await runCairnAsync(['bootstrap', '--token', token, '--write', plain], {})).status).toBe(0);
    expect((await runCairnAsync(['renew', '--dir', plain], {})).status).toBe(0);
    expect(existsSync(join(plain, 'federated'))).toBe(false);
  });
});
