import { generateKeyPairSync, createPrivateKey, type KeyObject } from 'node:crypto';
import type { Clock } from '../../lib/clock.js';
import { canonicalJson } from '../../lib/canonical-json.js';
import { CairnError } from '../../lib/errors.js';
import type { Logger } from '../../lib/log.js';
import { consistencyProof, EMPTY_ROOT, extend, inclusionProof, leafHash, nodesRead, type NodeSource } from '../../lib/merkle.js';
import { checkKeyName, checkpointText, rawEd25519, signNote, verifierKey } from '../../lib/signed-note.js';
import type { Sealer } from '../authority/sealing.js';
import type { Queryable } from '../db/database.js';
import type { AuditAppender, AuditEvent } from './port.js';
import type { AuditFilter, AuditStore, StoredCheckpoint } from './store.js';

/** Associated data the log key is sealed with (ca/kek re-seals it under a new KEK). */
export const AUDIT_LOG_SEALING_CONTEXT = 'audit-log-key';
export const MAX_ENTRIES_PAGE = 1000;
/** Entries numbered per integration transaction. */
const INTEGRATE_BATCH = 5000;

export interface AuditLogDeps {
  readonly store: AuditStore;
  readonly clock: Clock;
  readonly sealer: Sealer;
  readonly logger: Logger;
  /** The log's name (checkpoint origin and note key name) when this replica creates the log; the stored one wins after. */
  readonly origin: string;
}

interface Identity {
  readonly origin: string;
  readonly publicKey: Buffer;
  readonly privateKey: KeyObject;
}

const range = (message: string, details: Record<string, unknown>): CairnError => new CairnError('invalid_audit_range', message, { details });

/**
 * The verifiable audit log: entries appended in other domains' transactions (AuditAppender), then
 * numbered and hashed into an RFC 6962 tree by `integrate` (any replica, one at a time), and signed
 * as C2SP checkpoints.
 */
export class AuditLog implements AuditAppender {
  private identity: Identity | undefined;

  constructor(private readonly deps: AuditLogDeps) {
    checkKeyName(deps.origin);
  }

  /**
   * The entry bytes escape anything (canonical JSON); the search columns are PostgreSQL text, which
   * cannot hold NUL. A hostile request's SPIFFE ID with a NUL in it is still recorded in full in the
   * entry, just not indexed — it must not make the record, and so the request, fail.
   */
  async append(q: Queryable, events: readonly AuditEvent[]): Promise<void> {
    if (events.length === 0) return;
    const time = this.deps.clock.now();
    const iso = time.toISOString();
    await this.deps.store.append(q, events.map((e) => {
      const { spiffeId, serial } = e.subject;
      return {
        text: canonicalJson({ ...e.subject, time: iso, event: e.event, actor: e.actor }),
        time,
        event: e.event,
        actor: indexable(e.actor) ?? '\uFFFD',
        spiffeId: indexable(spiffeId),
        serial: indexable(serial),
      };
    }));
  }

  record(events: readonly AuditEvent[]): Promise<void> {
    return this.append(this.deps.store.db, events);
  }

  /** The log's origin and key, created (sealed under the KEK) by the first replica that needs them. */
  async open(): Promise<Identity> {
    if (this.identity) return this.identity;
    let record = await this.deps.store.log();
    if (!record) {
      const { publicKey, privateKey } = generateKeyPairSync('ed25519');
      await this.deps.store.createIfAbsent({
        origin: this.deps.origin,
        publicKey: rawEd25519(publicKey),
        privateKeySealed: this.deps.sealer.seal(privateKey.export({ type: 'pkcs8', format: 'der' }), AUDIT_LOG_SEALING_CONTEXT),
        size: 0,
        root: EMPTY_ROOT,
      }, this.deps.clock.now());
      record = (await this.deps.store.log())!;
    }
    const privateKey = createPrivateKey({ key: this.deps.sealer.open(record.privateKeySealed, AUDIT_LOG_SEALING_CONTEXT), format: 'der', type: 'pkcs8' });
    if (record.origin !== this.deps.origin) this.deps.logger.warn({ event: 'audit.origin_differs', origin: record.origin, configured: this.deps.origin }, 'the audit log was created with another origin; it keeps its own');
    this.identity = { origin: record.origin, publicKey: record.publicKey, privateKey };
    return this.identity;
  }

  async key(): Promise<{ vkey: string; publicKey: string }> {
    const id = await this.open();
    return { vkey: verifierKey(id.origin, id.publicKey), publicKey: id.publicKey.toString('base64') };
  }

  /** Numbers every committed entry not numbered yet; returns the tree's size and how many were added. */
  async integrate(): Promise<{ size: number; added: number }> {
    await this.open();
    let added = 0;
    for (;;) {
      const r = await this.deps.store.integrate(INTEGRATE_BATCH, (size, frontier, data) => extend(size, frontier, data.map((d) => leafHash(d))));
      added += r.added;
      if (r.added < INTEGRATE_BATCH) return { size: r.size, added };
    }
  }

  /**
   * Signs the integrated tree when it has grown past the latest checkpoint (or none exists), and
   * stores it; `created` says whether this call made it (for export: each checkpoint is exported
   * by the replica that made it).
   */
  async checkpoint(): Promise<{ checkpoint: StoredCheckpoint; created: boolean }> {
    const id = await this.open();
    const latest = await this.deps.store.latestCheckpoint();
    const log = (await this.deps.store.log())!;
    if (latest && latest.size >= log.size) return { checkpoint: latest, created: false };
    const note = signNote(checkpointText({ origin: id.origin, size: log.size, root: log.root }), id.origin, id.privateKey);
    const made: StoredCheckpoint = { size: log.size, root: log.root, note, createdAt: this.deps.clock.now() };
    const created = await this.deps.store.addCheckpoint(made);
    return { checkpoint: created ? made : ((await this.deps.store.latestCheckpoint()) ?? made), created };
  }

  /** The latest checkpoint, signing one first when there is none yet. */
  async latest(): Promise<StoredCheckpoint> {
    return (await this.deps.store.latestCheckpoint()) ?? (await this.checkpoint()).checkpoint;
  }

  /** For metrics: the integrated size, rows not numbered yet, and the newest checkpoint (never signs one). */
  async state(): Promise<{ size: number; pending: number; checkpoint: { size: number; createdAt: Date } | undefined }> {
    const [size, pending, checkpoint] = await Promise.all([this.size(), this.deps.store.pending(), this.deps.store.latestCheckpoint()]);
    return { size, pending, checkpoint: checkpoint && { size: checkpoint.size, createdAt: checkpoint.createdAt } };
  }

  async size(): Promise<number> {
    return (await this.deps.store.log())?.size ?? 0;
  }

  async entries(start: number, end: number): Promise<{ index: number; data: Buffer }[]> {
    if (end <= start) throw range('end must be greater than start', { start, end });
    if (end - start > MAX_ENTRIES_PAGE) throw range(`at most ${MAX_ENTRIES_PAGE} entries per page`, { start, end, max: MAX_ENTRIES_PAGE });
    const size = await this.size();
    if (start >= size) throw range(`start ${start} is beyond the log's integrated size ${size}`, { start, size });
    return this.deps.store.entries(start, Math.min(end, size));
  }

  async inclusion(index: number, size: number): Promise<Buffer[]> {
    const current = await this.size();
    if (size > current) throw range(`size ${size} is beyond the log's integrated size ${current}`, { size, current });
    if (index >= size) throw range(`index ${index} is not in a tree of size ${size}`, { index, size });
    return this.prove((src) => inclusionProof(src, index, size));
  }

  async consistency(from: number, to: number): Promise<Buffer[]> {
    const current = await this.size();
    if (to > current) throw range(`to ${to} is beyond the log's integrated size ${current}`, { to, current });
    if (from > to) throw range(`from ${from} is greater than to ${to}`, { from, to });
    return this.prove((src) => consistencyProof(src, from, to));
  }

  search(filter: AuditFilter, limit: number, after: number): Promise<{ index: number; data: Buffer }[]> {
    return this.deps.store.search(filter, limit, after);
  }

  /** Runs a proof twice: once to learn which stored subtrees it reads, once on them (one query). */
  private async prove(run: (src: NodeSource) => Buffer[]): Promise<Buffer[]> {
    const nodes = await this.deps.store.nodes(nodesRead(run));
    return run((level, index) => {
      const hash = nodes.get(`${level}/${index}`);
      if (!hash) throw new CairnError('internal', `the audit tree lacks subtree ${level}/${index}`);
      return hash;
    });
  }
}

const indexable = (v: unknown): string | null => (typeof v === 'string' && !v.includes('\0') ? v : null);
