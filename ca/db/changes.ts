import type { Database, Queryable, Unlisten } from './database.js';

/**
 * One channel for "something agents care about changed" (entries, bundles, nodes). NOTIFY is
 * transactional, so listeners on every replica hear it exactly when the change commits.
 */
export const CHANGE_CHANNEL = 'cairn_changes';

/**
 * What a change touches, so a replica wakes only the long-polls it concerns: with 10,000 agents
 * connected, waking all of them for one agent's entry costs 10,000 rounds of reads.
 */
export type Change =
  /** Entries or templates under these parents were created, changed, moved or deleted. */
  | { readonly kind: 'entries'; readonly trustDomain: string; readonly parents: readonly string[] }
  /** A node (re-)attested: its selectors, hence its node aliases, may differ. */
  | { readonly kind: 'node'; readonly trustDomain: string; readonly node: string }
  /** A trust domain's published keys changed (its bundle sequence moved). */
  | { readonly kind: 'bundle'; readonly trustDomain: string }
  /** Anything else in one trust domain: CRLs, foreign bundles, relationships, its bundle endpoint. */
  | { readonly kind: 'trust-domain'; readonly trustDomain: string }
  /**
   * Anything anywhere: the listener came back after notifications may have been lost, or a replica
   * of an older release sent a bare trust-domain name (its bundle changes may concern agents of
   * other trust domains that federate with it).
   */
  | { readonly kind: 'unknown' };

/** PostgreSQL refuses payloads of 8,000 bytes or more; a change that would not fit wakes its whole trust domain. */
const MAX_PAYLOAD_BYTES = 7000;

export function encodeChange(change: Exclude<Change, { kind: 'unknown' }>): string {
  const td = change.trustDomain;
  let payload: string;
  switch (change.kind) {
    case 'entries':
      payload = JSON.stringify({ td, p: [...new Set(change.parents)] });
      break;
    case 'node':
      payload = JSON.stringify({ td, n: change.node });
      break;
    case 'bundle':
      payload = JSON.stringify({ td, b: 1 });
      break;
    case 'trust-domain':
      payload = JSON.stringify({ td });
      break;
  }
  return Buffer.byteLength(payload) <= MAX_PAYLOAD_BYTES ? payload : JSON.stringify({ td });
}

/** Never throws: anything unreadable is treated as "anything may have changed". */
export function decodeChange(payload: string): Change {
  if (!payload.startsWith('{')) return { kind: 'unknown' };
  try {
    const v = JSON.parse(payload) as { td?: unknown; p?: unknown; n?: unknown; b?: unknown };
    if (typeof v.td !== 'string') return { kind: 'unknown' };
    if (Array.isArray(v.p) && v.p.every((p) => typeof p === 'string')) return { kind: 'entries', trustDomain: v.td, parents: v.p as string[] };
    if (typeof v.n === 'string') return { kind: 'node', trustDomain: v.td, node: v.n };
    if (v.b === 1) return { kind: 'bundle', trustDomain: v.td };
    return { kind: 'trust-domain', trustDomain: v.td };
  } catch {
    return { kind: 'unknown' };
  }
}

export async function notifyChange(tx: Queryable, change: Exclude<Change, { kind: 'unknown' }>): Promise<void> {
  await tx.query('SELECT pg_notify($1, $2)', [CHANGE_CHANNEL, encodeChange(change)]);
}

/** Shorthand for a change that concerns a whole trust domain. */
export function notifyTrustDomain(tx: Queryable, trustDomain: string): Promise<void> {
  return notifyChange(tx, { kind: 'trust-domain', trustDomain });
}

/** `onLost` runs when the listening connection drops; `onChange` gets `unknown` once it is back. */
export function listenForChanges(db: Database, onChange: (change: Change) => void, onLost?: () => void): Promise<Unlisten> {
  return db.listen(CHANGE_CHANNEL, (payload) => onChange(decodeChange(payload)), onLost);
}
