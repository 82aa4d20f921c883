import { createPrivateKey, X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseBootstrapToken } from '../../contract/bootstrap-token.js';
import { createPgDatabase, storeKind } from '../support/db.js';
import { redeem } from '../support/agent-client.js';
import { opensslVerify } from '../support/openssl.js';
import { runCairnAsync, spawnCairn } from '../support/processes.js';
import { startTestCa } from '../support/ca.js';

describe(`agentless device path through the CLI (${storeKind()} store)`, () => {
  it('bootstrap with a credential, renew twice with a short TTL, every certificate verified by openssl; reuse fails', { timeout: 120_000 }, async () => {
    const ca = await startTestCa();
    const dir = mkdtempSync(join(tmpdir(), 'cairn-device-'));
    try {
      await ca.admin('/v1/trust-domains', { body: { name: 'iot.test', x509SvidTtlSeconds: 60 } });
      const env = { CAIRN_SERVER: ca.url, CAIRN_ADMIN_TOKEN: ca.adminToken, CAIRN_DATA_DIR: ca.dataDir };
      const id = 'spiffe://iot.test/device-type/thermostat/ins/6f1c2a9e-8a4b-4b36-9a57-0f4e2b9d1c11';
      const created = await runCairnAsync(['token', 'create', '--trust-domain', 'iot.test', '--spiffe-id', id, '--ttl', '5m'], env);
      expect(created.status, created.stderr).toBe(0);
      const token = created.stdout.trim();
      expect(created.stdout).toBe(token + '\n');
      expect(created.stderr).toMatch(/workload credential for spiffe:\/\/iot\.test\/device-type/);

      const boot = await runCairnAsync(['bootstrap', '--token', token, '--write', dir], {});
      expect(boot.status, boot.stderr).toBe(0);
      const serials = new Set<string>();
      const check = (): void => {
        const pem = readFileSync(join(dir, 'svid.pem'), 'utf8');
        expect(opensslVerify(pem, readFileSync(join(dir, 'bundle.pem'), 'utf8'), ['-x509_strict'])).toContain('OK');
        expect(statSync(join(dir, 'svid.key')).mode & 0o777).toBe(0o600);
        const cert = new X509Certificate(pem);
        expect(cert.subjectAltName).toBe(`URI:${id}`);
        expect((new Date(cert.validTo).getTime() - new Date(cert.validFrom).getTime()) / 1000).toBe(70);
        // the certificate matches the key on disk
        expect(cert.checkPrivateKey(createPrivateKey(readFileSync(join(dir, 'svid.key'))))).toBe(true);
        serials.add(cert.serialNumber);
      };
      check();
      for (let i = 0; i < 2; i++) {
        const r = await runCairnAsync(['renew', '--dir', dir], {});
        expect(r.status, r.stderr).toBe(0);
        check();
      }
      expect(serials.size).toBe(3);

      const again = await runCairnAsync(['bootstrap', '--token', token, '--write', mkdtempSync(join(tmpdir(), 'cairn-device2-'))], {});
      expect(again.status).toBe(1);
      expect(again.stderr).toMatch(/invalid_token/);

      // a JWT-SVID for the device over mTLS
      const agents = JSON.parse((await runCairnAsync(['agent', 'list', '--trust-domain', 'iot.test', '--json'], env)).stdout);
      expect(agents.agents[0]).toMatchObject({ spiffeId: id, kind: 'device', attestationType: 'workload_credential' });
    } finally {
      await ca.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('`cairn renew --watch` renews at about half-life and runs the hook', async () => {
    const ca = await startTestCa();
    const dir = mkdtempSync(join(tmpdir(), 'cairn-watch-'));
    try {
      await ca.admin('/v1/trust-domains', { body: { name: 'watch.test', x509SvidTtlSeconds: 60 } });
      const { token } = await (await ca.admin('/v1/tokens', { body: { trustDomain: 'watch.test', spiffeId: 'spiffe://watch.test/sidecar' } })).json();
      expect((await runCairnAsync(['bootstrap', '--token', token, '--write', dir], {})).status).toBe(0);
      const marker = join(dir, 'reloaded');
      const watch = spawnCairn(['renew', '--dir', dir, '--watch', '--exec', `echo reloaded >> ${marker}`]);
      try {
        await watch.waitFor(/renewed spiffe:\/\/watch\.test\/sidecar/, 60_000);
        expect(readFileSync(marker, 'utf8')).toContain('reloaded');
      } finally {
        await watch.stop();
      }
    } finally {
      await ca.close();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 90_000);
});

describe(`one token, 50 concurrent redemptions (${storeKind()} store)`, () => {
  it(storeKind() === 'postgres' ? 'across TWO CA processes sharing one PostgreSQL: exactly one success, 49 clean 401s' : 'on one CA: exactly one success, 49 clean 401s', async () => {
    const dirs = [mkdtempSync(join(tmpdir(), 'cairn-race-a-')), mkdtempSync(join(tmpdir(), 'cairn-race-b-'))];
    const pg = storeKind() === 'postgres' ? await createPgDatabase() : undefined;
    const kekFile = join(dirs[0]!, 'shared-kek');
    writeFileSync(kekFile, Buffer.alloc(32, 9).toString('base64'), { mode: 0o600 });
    const adminToken = 'cairn-admin.' + 'r'.repeat(43);
    const processes = (pg ? dirs : dirs.slice(0, 1)).map((dir) =>
      spawnCairn(['ca', 'start', '--listen', '127.0.0.1:0', '--tls-listen', '127.0.0.1:0'], { CAIRN_DATA_DIR: dir, DATABASE_URL: pg?.url, CAIRN_KEK_FILE: kekFile, CAIRN_ADMIN_TOKEN: adminToken }),
    );
    try {
      await Promise.all(processes.map((p) => p.waitFor(/"msg":"CA listening"/)));
      const urls = processes.map((p) => JSON.parse(p.stderr().split('\n').find((l) => l.includes('"CA listening"'))!) as { url: string; tlsUrl: string });
      const admin = { CAIRN_SERVER: urls[0]!.url, CAIRN_ADMIN_TOKEN: adminToken };
      expect((await runCairnAsync(['trust-domain', 'create', 'race.test'], admin)).status).toBe(0);
      const token = (await runCairnAsync(['token', 'create', '--trust-domain', 'race.test'], admin)).stdout.trim();
      const { claims } = parseBootstrapToken(token);
      const { encodeBootstrapToken } = await import('../../contract/bootstrap-token.js');
      const secret = token.split('.')[2]!;
      // spread the 50 attempts over the replicas' TLS endpoints
      const attempts = Array.from({ length: 50 }, (_, i) => redeem(encodeBootstrapToken({ ...claims, url: urls[i % urls.length]!.tlsUrl }, secret)));
      const results = await Promise.all(attempts);
      const statuses = results.map((r) => r.status);
      expect(statuses.filter((s) => s === 201)).toHaveLength(1);
      expect(statuses.filter((s) => s === 401)).toHaveLength(49);
      for (const r of results.filter((x) => x.status === 401)) expect((r.body as { code: string }).code).toBe('invalid_token');
      const inventory = JSON.parse((await runCairnAsync(['svid', 'list', '--trust-domain', 'race.test', '--json'], admin)).stdout);
      expect(inventory.svids).toHaveLength(1);
      for (const p of processes) expect(p.stderr()).not.toMatch(/"level":50/);
    } finally {
      await Promise.all(processes.map((p) => p.stop()));
      await pg?.drop();
      for (const d of dirs) rmSync(d, { recursive: true, force: true });
    }
  }, 120_000);
});

