import type { Database } from '../db/database.js';
import { toBuffer, toDate } from '../db/database.js';
import { guard } from '../db/errors.js';

export interface ServerTlsAuthorityRecord {
  readonly keyType: string;
  readonly certificate: Buffer;
  readonly privateKeySealed: Buffer;
  readonly notAfter: Date;
  readonly createdAt: Date;
}

export class ServerTlsStore {
  constructor(private readonly db: Database) {}

  get(): Promise<ServerTlsAuthorityRecord | undefined> {
    return guard(async () => {
      const res = await this.db.query<{ key_type: string; certificate: Uint8Array; private_key_sealed: Uint8Array; not_after: Date; created_at: Date }>(
        `SELECT key_type, certificate, private_key_sealed, not_after, created_at FROM server_tls_authority WHERE id = 'default'`,
      );
      const r = res.rows[0];
      return r && { keyType: r.key_type, certificate: toBuffer(r.certificate), privateKeySealed: toBuffer(r.private_key_sealed), notAfter: toDate(r.not_after), createdAt: toDate(r.created_at) };
    });
  }

  /** First replica wins; the others read what it wrote. */
  insertIfAbsent(r: ServerTlsAuthorityRecord): Promise<void> {
    return guard(async () => {
      await this.db.query(
        `INSERT INTO server_tls_authority (id, key_type, certificate, private_key_sealed, not_after, created_at) VALUES ('default', $1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING`,
        [r.keyType, r.certificate, r.privateKeySealed, r.notAfter, r.createdAt],
      );
    });
  }
}
