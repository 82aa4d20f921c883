import type { Database, Queryable } from '../db/database.js';
import { toBuffer, toDate } from '../db/database.js';
import { guard } from '../db/errors.js';
import type { KeyType } from '../authority/key-types.js';

/**
 * A trust domain's upstream authority. disk: the upstream CA's certificate chain (its certificate
 * first, up to the root) and its key, sealed under the KEK; offline: the chain of the last imported
 * CA certificate (from its issuer up to the root), and no key.
 */
export type UpstreamAuthority =
  | { readonly trustDomain: string; readonly mode: 'disk'; readonly chain: Buffer; readonly keyType: KeyType; readonly privateKeySealed: Buffer; readonly createdAt: Date; readonly updatedAt: Date }
  | { readonly trustDomain: string; readonly mode: 'offline'; readonly chain: Buffer; readonly createdAt: Date; readonly updatedAt: Date };

interface Row {
  trust_domain: string;
  mode: 'disk' | 'offline';
  certificate_chain: Uint8Array;
  key_type: string | null;
  private_key_sealed: Uint8Array | null;
  created_at: Date;
  updated_at: Date;
}

function fromRow(r: Row): UpstreamAuthority {
  const base = { trustDomain: r.trust_domain, chain: toBuffer(r.certificate_chain), createdAt: toDate(r.created_at), updatedAt: toDate(r.updated_at) };
  return r.mode === 'disk'
    ? { ...base, mode: 'disk', keyType: r.key_type as KeyType, privateKeySealed: toBuffer(r.private_key_sealed!) }
    : { ...base, mode: 'offline' };
}

/** AAD of a sealed upstream key: binds it to its trust domain's row. */
export const upstreamSealingContext = (trustDomain: string): string => `cairn-upstream-key:${trustDomain}`;

export class UpstreamStore {
  constructor(private readonly db: Database) {}

  get(trustDomain: string, q: Queryable = this.db): Promise<UpstreamAuthority | undefined> {
    return guard(async () => {
      const res = await q.query<Row>(
        `SELECT trust_domain, mode, certificate_chain, key_type, private_key_sealed, created_at, updated_at FROM upstream_authorities WHERE trust_domain = $1`,
        [trustDomain],
      );
      return res.rows[0] ? fromRow(res.rows[0]) : undefined;
    });
  }

  /** Every trust domain with an offline upstream (the metrics report when each needs a signed successor). */
  offline(): Promise<string[]> {
    return guard(async () => {
      const res = await this.db.query<{ trust_domain: string }>(`SELECT trust_domain FROM upstream_authorities WHERE mode = 'offline' ORDER BY trust_domain`);
      return res.rows.map((r) => r.trust_domain);
    });
  }

  /** Inserts or replaces the trust domain's upstream. */
  put(tx: Queryable, u: UpstreamAuthority): Promise<void> {
    return guard(async () => {
      const disk = u.mode === 'disk';
      await tx.query(
        `INSERT INTO upstream_authorities (trust_domain, mode, certificate_chain, key_type, private_key_sealed, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (trust_domain) DO UPDATE SET mode = EXCLUDED.mode, certificate_chain = EXCLUDED.certificate_chain, key_type = EXCLUDED.key_type,
           private_key_sealed = EXCLUDED.private_key_sealed, updated_at = EXCLUDED.updated_at`,
        [u.trustDomain, u.mode, u.chain, disk ? u.keyType : null, disk ? u.privateKeySealed : null, u.createdAt, u.updatedAt],
      );
    });
  }
}
