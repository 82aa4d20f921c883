import type { Database, Queryable, Unlisten } from './database.js';

/**
 * One channel for "something agents care about changed" (entries, bundles, nodes). NOTIFY is
 * transactional, so listeners on every replica hear it exactly when the change commits.
 */
export const CHANGE_CHANNEL = 'cairn_changes';

export async function notifyChange(tx: Queryable, trustDomain: string): Promise<void> {
  await tx.query('SELECT pg_notify($1, $2)', [CHANGE_CHANNEL, trustDomain]);
}

export function listenForChanges(db: Database, onChange: (trustDomain: string) => void): Promise<Unlisten> {
  return db.listen(CHANGE_CHANNEL, onChange);
}
