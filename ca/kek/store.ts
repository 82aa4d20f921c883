import type { Database, Queryable } from '../db/database.js';
import { toBuffer } from '../db/database.js';
import { guard } from '../db/errors.js';

/**
 * Every value in the database sealed under the key-encryption key, by where it lives. A new kind
 * of sealed value must be added here, or `cairn kek rotate` would leave it under the old KEK (the
 * rotation test seals one of each kind and checks the old KEK opens none).
 */
export type SealedValue =
  | { readonly kind: 'authority_key'; readonly trustDomain: string; readonly id: string; readonly sealed: Buffer }
  | { readonly kind: 'server_tls_authority'; readonly sealed: Buffer }
  | { readonly kind: 'k8s_api_token'; readonly trustDomain: string; readonly cluster: string; readonly sealed: Buffer }
  | { readonly kind: 'audit_log_key'; readonly sealed: Buffer }
  | { readonly kind: 'upstream_key'; readonly trustDomain: string; readonly sealed: Buffer };

/** Returns the value re-sealed, or undefined to leave it as it is. */
export type Reseal = (value: SealedValue) => Buffer | undefined;

async function readAll(q: Queryable, lock: boolean): Promise<SealedValue[]> {
  const forUpdate = lock ? ' FOR UPDATE' : '';
  const keys = await q.query<{ trust_domain: string; id: string; private_key_sealed: Uint8Array }>(
    `SELECT trust_domain, id, private_key_sealed FROM authority_keys ORDER BY trust_domain, id${forUpdate}`,
  );
  const tls = await q.query<{ private_key_sealed: Uint8Array }>(`SELECT private_key_sealed FROM server_tls_authority${forUpdate}`);
  const tokens = await q.query<{ trust_domain: string; name: string; sealed: string }>(
    `SELECT trust_domain, name, config->>'apiTokenSealed' AS sealed FROM node_attestors
      WHERE kind = 'k8s_psat' AND config ? 'apiTokenSealed' ORDER BY trust_domain, name${forUpdate}`,
  );
  const audit = await q.query<{ private_key_sealed: Uint8Array }>(`SELECT private_key_sealed FROM audit_log${forUpdate}`);
  const upstream = await q.query<{ trust_domain: string; private_key_sealed: Uint8Array }>(
    `SELECT trust_domain, private_key_sealed FROM upstream_authorities WHERE private_key_sealed IS NOT NULL ORDER BY trust_domain${forUpdate}`,
  );
  return [
    ...keys.rows.map((r): SealedValue => ({ kind: 'authority_key', trustDomain: r.trust_domain, id: r.id, sealed: toBuffer(r.private_key_sealed) })),
    ...tls.rows.map((r): SealedValue => ({ kind: 'server_tls_authority', sealed: toBuffer(r.private_key_sealed) })),
    ...tokens.rows.map((r): SealedValue => ({ kind: 'k8s_api_token', trustDomain: r.trust_domain, cluster: r.name, sealed: Buffer.from(r.sealed, 'base64') })),
    ...audit.rows.map((r): SealedValue => ({ kind: 'audit_log_key', sealed: toBuffer(r.private_key_sealed) })),
    ...upstream.rows.map((r): SealedValue => ({ kind: 'upstream_key', trustDomain: r.trust_domain, sealed: toBuffer(r.private_key_sealed) })),
  ];
}

async function write(q: Queryable, v: SealedValue, sealed: Buffer): Promise<void> {
  switch (v.kind) {
    case 'authority_key':
      await q.query(`UPDATE authority_keys SET private_key_sealed = $3 WHERE trust_domain = $1 AND id = $2`, [v.trustDomain, v.id, sealed]);
      return;
    case 'server_tls_authority':
      await q.query(`UPDATE server_tls_authority SET private_key_sealed = $1`, [sealed]);
      return;
    case 'k8s_api_token':
      await q.query(
        `UPDATE node_attestors SET config = jsonb_set(config, '{apiTokenSealed}', to_jsonb($3::text))
          WHERE trust_domain = $1 AND kind = 'k8s_psat' AND name = $2`,
        [v.trustDomain, v.cluster, sealed.toString('base64')],
      );
      return;
    case 'audit_log_key':
      await q.query(`UPDATE audit_log SET private_key_sealed = $1`, [sealed]);
      return;
    case 'upstream_key':
      await q.query(`UPDATE upstream_authorities SET private_key_sealed = $2 WHERE trust_domain = $1`, [v.trustDomain, sealed]);
      return;
  }
}

export class SealedValueStore {
  constructor(private readonly db: Database) {}

  list(): Promise<SealedValue[]> {
    return guard(() => readAll(this.db, false));
  }

  /**
   * One transaction over every sealed value, its rows locked: a replica creating or re-sealing a
   * key at the same moment waits, so nothing is left behind under the old KEK or overwritten.
   * `check` runs on the values as written, before the commit; when it throws, nothing changes.
   * `also` joins the transaction (the audit entry of a rotation).
   */
  reseal(fn: Reseal, check: (after: readonly SealedValue[]) => void, also?: (tx: Queryable, result: { total: number; resealed: number }) => Promise<void>): Promise<{ total: number; resealed: number }> {
    return guard(() =>
      this.db.transaction(async (tx) => {
        const before = await readAll(tx, true);
        let resealed = 0;
        for (const v of before) {
          const next = fn(v);
          if (next === undefined) continue;
          await write(tx, v, next);
          resealed++;
        }
        check(await readAll(tx, false));
        await also?.(tx, { total: before.length, resealed });
        return { total: before.length, resealed };
      }),
    );
  }
}
