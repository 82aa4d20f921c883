import { describe, expect, it } from 'vitest';
import { migrate } from '../../ca/db/migrate.js';
import { NodeStore } from '../../ca/nodes/store.js';
import { migrations, storeKind, testDatabase } from '../support/db.js';

const TD = 'legacy.test';
const SA = '/var/run/secrets/kubernetes.io/serviceaccount';

/** Configurations and bans as the previous schema stored them, carried forward by the hardening migration. */
describe(`the attestation hardening migration (${storeKind()} store)`, () => {
  it('disables cluster configurations that named host files, maps the in-cluster defaults to the built-in credential set, and keeps bans as deny-list entries', async () => {
    const t = await testDatabase({ migrated: false });
    try {
      const all = migrations();
      const at = all.findIndex((m) => m.name === 'attestation_hardening');
      expect(at).toBeGreaterThan(0);
      await migrate(t.db, all.slice(0, at));
      const now = new Date();
      await t.db.query(`INSERT INTO trust_domains (name, ca_key_type, ca_ttl_seconds, x509_svid_ttl_seconds, jwt_svid_ttl_seconds, created_at, updated_at) VALUES ($1, 'ec-p256', 3600, 600, 300, $2, $2)`, [TD, now]);
      const base = { audience: 'cairn-ca', allowedServiceAccounts: ['cairn:cairn-agent'] };
      const legacy: Record<string, object> = {
        'in-cluster': { mode: 'token_review', ...base },
        'in-cluster-explicit': { mode: 'token_review', ...base, apiTokenFile: `${SA}/token`, apiCaFile: `${SA}/ca.crt` },
        'kek-to-sink': { mode: 'token_review', ...base, apiServer: 'https://sink.example', apiTokenFile: '/var/lib/cairn/kek' },
        'sa-token-elsewhere': { mode: 'token_review', ...base, apiServer: 'https://other.example' },
        'jwks-ca-file': { mode: 'jwks', ...base, issuer: 'https://i.example', jwksUrl: 'https://i.example/jwks', jwksCaFile: '/etc/ssl/private/key.pem' },
        'jwks-inline': { mode: 'jwks', ...base, issuer: 'https://i.example', jwks: { keys: [{ kty: 'EC' }] } },
      };
      for (const [name, config] of Object.entries(legacy)) {
        await t.db.query(`INSERT INTO node_attestors (trust_domain, kind, name, config, created_at, updated_at) VALUES ($1, 'k8s_psat', $2, $3, $4, $4)`, [TD, name, JSON.stringify(config), now]);
      }
      const fp = 'ab'.repeat(20);
      const nodes = [
        [`spiffe://${TD}/cairn/agent/x509pop/${fp}`, 'x509pop', true],
        [`spiffe://${TD}/cairn/agent/k8s_psat/prod/node-uid-1`, 'k8s_psat', false],
        [`spiffe://${TD}/cairn/agent/edge-1`, 'join_token', true],
      ] as const;
      for (const [id, type, banned] of nodes) {
        await t.db.query(
          `INSERT INTO attested_nodes (spiffe_id, trust_domain, kind, attestation_type, selectors, serial, expires_at, banned, created_at, updated_at) VALUES ($1, $2, 'agent', $3, '{}', '01', $4, $5, $4, $4)`,
          [id, TD, type, now, banned],
        );
      }
      await t.db.query(`INSERT INTO attestation_challenges (id, trust_domain, attestor, nonce, chain, expires_at) VALUES ('c1', $1, 'acme', $2, $3, $4)`, [TD, Buffer.alloc(32), Buffer.alloc(200_000), now]);

      await migrate(t.db, all);

      const configs = new Map((await t.db.query<{ name: string; config: unknown }>(`SELECT name, config FROM node_attestors`)).rows.map((r) => [r.name, (typeof r.config === 'string' ? JSON.parse(r.config) : r.config) as Record<string, unknown>]));
      expect(configs.get('in-cluster')).toEqual({ mode: 'token_review', ...base, kubeCredentials: 'in-cluster' });
      expect(configs.get('in-cluster-explicit')).toEqual({ mode: 'token_review', ...base, kubeCredentials: 'in-cluster' });
      expect(configs.get('kek-to-sink')).toMatchObject({ disabled: expect.stringMatching(/named files on the CA host/), legacy: { apiServer: 'https://sink.example', apiTokenFile: '/var/lib/cairn/kek' } });
      // nothing a replica of the previous version could read and send: no file, no foreign API server
      expect(configs.get('kek-to-sink')).not.toHaveProperty('apiTokenFile');
      expect(configs.get('kek-to-sink')).not.toHaveProperty('apiServer');
      expect(configs.get('sa-token-elsewhere')).toMatchObject({ disabled: expect.any(String), legacy: { apiServer: 'https://other.example' } });
      expect(configs.get('jwks-ca-file')).toMatchObject({ disabled: expect.any(String), legacy: { jwksCaFile: '/etc/ssl/private/key.pem' } });
      expect(configs.get('jwks-ca-file')).not.toHaveProperty('jwksCaFile');
      expect(configs.get('jwks-inline')).toEqual(legacy['jwks-inline']);

      const bans = (await t.db.query<{ kind: string; value: string }>(`SELECT kind, value FROM node_bans ORDER BY value`)).rows;
      expect(bans).toEqual([
        { kind: 'spiffe_id', value: `spiffe://${TD}/cairn/agent/edge-1` },
        { kind: 'spiffe_id', value: `spiffe://${TD}/cairn/agent/x509pop/${fp}` },
      ]);
      const store = new NodeStore(t.db);
      expect((await store.get(nodes[0][0]))?.banned).toBe(true);
      expect((await store.get(nodes[1][0]))?.banned).toBe(false);
      // what the node can be banned by besides its ID, derived from the ID the attestor gave it
      const subjects = new Map((await t.db.query<{ spiffe_id: string; ban_subjects: string[] }>(`SELECT spiffe_id, ban_subjects FROM attested_nodes`)).rows.map((r) => [r.spiffe_id, r.ban_subjects]));
      expect(subjects.get(nodes[0][0])).toEqual([`x509pop_fingerprint:${fp}`]);
      expect(subjects.get(nodes[1][0])).toEqual(['k8s_psat_node_uid:node-uid-1']);
      expect(subjects.get(nodes[2][0])).toEqual([]);
      await t.db.query(`INSERT INTO node_bans (trust_domain, kind, value, created_by, created_at) VALUES ($1, 'k8s_psat_node_uid', 'node-uid-1', 'test', $2)`, [TD, now]);
      expect((await store.get(nodes[1][0]))?.banned).toBe(true);

      const tables = (await t.db.query<{ tablename: string }>(`SELECT tablename FROM pg_tables WHERE schemaname = 'public'`)).rows.map((r) => r.tablename);
      expect(tables).toContain('x509pop_challenges');
      expect(tables).not.toContain('attestation_challenges');
    } finally {
      await t.close();
    }
  }, 120_000);
});
