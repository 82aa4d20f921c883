import { upstreamSealingContext } from '../upstream/store.js';
import { accessSync, constants, existsSync, rmSync } from 'node:fs';
import { writeFileAtomic } from '../../lib/fs.js';
import { dirname } from 'node:path';
import type { KekRotationView, KekStatusView } from '../../contract/kek-api.js';
import type { Clock } from '../../lib/clock.js';
import { CairnError } from '../../lib/errors.js';
import type { Logger } from '../../lib/log.js';
import type { Random } from '../../lib/random.js';
import { createSealer, kekId, type KekRing, type Sealer } from '../authority/sealing.js';
import { sealingContext } from '../authority/signers.js';
import { readKekFile } from '../keys-at-rest.js';
import { tokenKeyId } from '../node-attestation/service.js';
import { SEALING_CONTEXT } from '../server-tls/service.js';
import type { SealedValue, SealedValueStore } from './store.js';
import type { AuditAppender } from '../audit/port.js';
import { AUDIT_LOG_SEALING_CONTEXT } from '../audit/service.js';
import type { Queryable } from '../db/database.js';

export interface KekServiceDeps {
  readonly ring: KekRing;
  readonly sealer: Sealer;
  readonly store: SealedValueStore;
  readonly clock: Clock;
  readonly random: Random;
  readonly logger: Logger;
  /** This replica's KEK file (--kek-file, or <data-dir>/kek); a rotation's new key waits beside it. */
  readonly kekFile: string | undefined;
  readonly audit: AuditAppender;
}

/** What a sealed value was sealed for: the associated data that binds it to its row. */
function contextOf(v: SealedValue): string {
  switch (v.kind) {
    case 'authority_key':
      return sealingContext(v.trustDomain, v.id);
    case 'server_tls_authority':
      return SEALING_CONTEXT;
    case 'k8s_api_token':
      return tokenKeyId(v.trustDomain, v.cluster);
    case 'audit_log_key':
      return AUDIT_LOG_SEALING_CONTEXT;
    case 'upstream_key':
      return upstreamSealingContext(v.trustDomain);
  }
}

const describe = (v: SealedValue): string =>
  v.kind === 'authority_key' ? `authority key ${v.id} of ${v.trustDomain}` : v.kind === 'server_tls_authority' ? 'the server TLS authority key' : v.kind === 'audit_log_key' ? 'the audit log key' : v.kind === 'upstream_key' ? `the upstream CA key of ${v.trustDomain}` : `the Kubernetes API token of cluster ${v.cluster} in ${v.trustDomain}`;

const sameKeyAt = (path: string, key: Buffer): boolean => {
  try {
    return readKekFile(path).equals(key);
  } catch {
    return false;
  }
};

/** Where `cairn kek rotate` puts the new key for this replica to take: beside its KEK file. */
export const stagedKekFile = (kekFile: string): string => `${kekFile}.next`;

/**
 * The key-encryption key's rotation. The new KEK never travels through the API: `cairn kek rotate`
 * writes it beside the CA's own KEK file (so only someone who may write there can choose it), and the
 * admin call only tells the CA to take it. The CA then re-seals every sealed value in one
 * transaction, checks each one opens with the new KEK alone, and only then moves the new file over
 * the old one. Other replicas take the new file on SIGHUP or restart (`reload`); a value one of them
 * sealed under the old KEK meanwhile is re-sealed then, since the old KEK stays in its memory. Which
 * KEK sealed a value is found by trying each held KEK (the format does not name it; see sealing.ts).
 */
export class KekService {
  /** rotate, reload and settle one at a time: each reads and re-seals every value. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly deps: KekServiceDeps) {}

  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  async status(): Promise<KekStatusView> {
    const values = await this.deps.store.list();
    const sealedUnder: Record<string, number> = {};
    for (const v of values) {
      const id = this.deps.sealer.openedBy(v.sealed, contextOf(v)) ?? 'unknown';
      sealedUnder[id] = (sealedUnder[id] ?? 0) + 1;
    }
    return { kekId: this.deps.ring.current.id, heldKekIds: this.deps.ring.ids, sealedValues: values.length, sealedUnder };
  }

  rotate(actor: string): Promise<KekRotationView> {
    return this.exclusive(() => this.rotateNow(actor));
  }

  private async rotateNow(actor: string): Promise<KekRotationView> {
    const kekFile = this.deps.kekFile;
    if (kekFile === undefined) throw new CairnError('kek_not_staged', 'this CA runs without a KEK file, so its KEK cannot be rotated');
    const staged = stagedKekFile(kekFile);
    if (!existsSync(staged)) {
      throw new CairnError('kek_not_staged', `no new key-encryption key is waiting at ${staged}: run cairn kek rotate --new-kek-file FILE on this CA's host, with this CA's --kek-file or --data-dir`);
    }
    let next: Buffer;
    try {
      next = readKekFile(staged);
    } catch (err) {
      throw new CairnError('kek_not_staged', `the new key-encryption key at ${staged} cannot be used: ${(err as Error).message}`);
    }
    // From here the key is the one read, whatever is staged next: the file written at the end is this
    // key from memory, never a path another rotation may have replaced meanwhile.
    const previous = this.deps.ring.current;
    if (kekId(next) === previous.id) throw new CairnError('kek_unchanged', 'the new key-encryption key is the one in use; generate a new one (head -c 32 /dev/urandom)');
    // Checked before anything is re-sealed: keys re-sealed under a KEK that cannot replace the old
    // file would not open after a restart.
    try {
      accessSync(dirname(kekFile), constants.W_OK);
    } catch {
      throw new CairnError('kek_not_staged', `the CA cannot replace its KEK file ${kekFile} (its directory is not writable by the CA), so it does not rotate; give the new KEK to every replica's --kek-file and send them SIGHUP instead`);
    }
    // Held for opening only: values go on being sealed under the current KEK until the commit.
    const newId = this.deps.ring.hold(next);
    const result = await this.resealAll(newId, next, 'rotate', (tx, r) =>
      this.deps.audit.append(tx, [{ event: 'kek.rotated', actor, subject: { kekId: newId, previousKekId: previous.id, sealedValues: r.total, resealed: r.resealed } }]));
    this.deps.ring.use(next);
    try {
      writeFileAtomic(kekFile, next.toString('base64') + '\n', 0o600);
    } catch (err) {
      // The database is under the new KEK now and this process holds it: say so loudly, keep the staged copy.
      this.deps.logger.error({ event: 'kek.file_not_written', kekId: newId, kekFile, staged, err }, `the KEK was rotated to ${newId} but ${kekFile} could not be written; copy ${staged} over it before this CA restarts`);
      throw new CairnError('internal', `the stored keys were re-sealed under KEK ${newId}, but ${kekFile} could not be written (${(err as Error).message}): copy ${staged} over it before this CA restarts`);
    }
    // Only the key this rotation took: another one staged meanwhile is its operator's to use.
    if (sameKeyAt(staged, next)) rmSync(staged, { force: true });
    // A value sealed under the previous KEK by a request that raced the rotation's snapshot.
    await this.resealAll(newId, next, 'reload').catch((err: unknown) => this.deps.logger.warn({ err }, 'the re-seal pass after a KEK rotation failed; housekeeping retries it'));
    const rotatedAt = this.deps.clock.now();
    this.deps.logger.info({ event: 'kek.rotated', kekId: newId, previousKekId: previous.id, sealedValues: result.total, resealed: result.resealed, kekFile, actor }, 'key-encryption key rotated: every sealed value re-sealed under the new KEK');
    return { kekId: newId, previousKekId: previous.id, sealedValues: result.total, resealed: result.resealed, kekFile, rotatedAt: rotatedAt.toISOString() };
  }

  /**
   * SIGHUP: re-read the KEK file. A new key there becomes the one that seals (the old one stays in
   * memory to open what is not re-sealed yet), and whatever this replica can open that is not under
   * the current KEK is re-sealed. Returns the current KEK's id.
   */
  reload(): Promise<string> {
    return this.exclusive(() => this.reloadNow());
  }

  /**
   * Housekeeping: while this replica holds more than one KEK, re-seal what is still under an older
   * one (a value sealed just as a rotation committed). Nothing to do otherwise.
   */
  settle(): Promise<void> {
    if (this.deps.ring.ids.length < 2) return Promise.resolve();
    return this.exclusive(async () => {
      const { id, key } = this.deps.ring.current;
      const { resealed } = await this.resealAll(id, key, 'reload');
      if (resealed > 0) this.deps.logger.info({ event: 'kek.resealed', kekId: id, resealed }, 'values still sealed under a previous KEK re-sealed');
    });
  }

  private async reloadNow(): Promise<string> {
    const kekFile = this.deps.kekFile;
    if (kekFile === undefined) return this.deps.ring.current.id;
    const kek = readKekFile(kekFile);
    const before = this.deps.ring.current.id;
    const id = this.deps.ring.use(kek);
    if (id !== before) this.deps.logger.info({ event: 'kek.reloaded', kekId: id, previousKekId: before, kekFile }, 'took the key-encryption key in the KEK file');
    const { resealed } = await this.resealAll(id, kek, 'reload');
    if (resealed > 0) this.deps.logger.info({ event: 'kek.resealed', kekId: id, resealed }, 'values still sealed under a previous KEK re-sealed');
    return id;
  }

  /**
   * Re-seals every value not under `id` with `kek` (always that key, whatever the ring's current
   * one is meanwhile). On rotate, a value no held KEK opens stops it (nothing is
   * changed); on reload it is left for the replica that holds its KEK, with a warning.
   */
  private resealAll(id: string, kek: Buffer, mode: 'rotate' | 'reload', also?: (tx: Queryable, result: { total: number; resealed: number }) => Promise<void>): Promise<{ total: number; resealed: number }> {
    const { sealer, logger } = this.deps;
    const alone = createSealer(kek, this.deps.random);
    return this.deps.store.reseal(
      (v) => {
        const context = contextOf(v);
        const by = sealer.openedBy(v.sealed, context);
        if (by === id) return undefined;
        if (by === undefined) {
          if (mode === 'reload') {
            logger.warn({ event: 'kek.reseal_skipped', value: describe(v) }, 'a sealed value opens with no KEK this replica holds; the replica that sealed it re-seals it on SIGHUP');
            return undefined;
          }
          throw new CairnError('kek_unavailable', `cannot rotate: ${describe(v)} opens with no key-encryption key this replica holds (${this.deps.ring.ids.join(', ')}); send SIGHUP to the replica that sealed it first, or give this one its KEK`);
        }
        return alone.seal(sealer.open(v.sealed, context), context);
      },
      (after) => {
        if (mode === 'reload') return;
        for (const v of after) alone.open(v.sealed, contextOf(v));
      },
      also,
    );
  }
}
