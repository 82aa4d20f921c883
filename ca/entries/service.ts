import type { Clock } from '../../lib/clock.js';
import { CairnError, isCairnError } from '../../lib/errors.js';
import { statusOf } from '../../lib/status.js';
import type { Logger } from '../../lib/log.js';
import { decodePageToken, pageSizeOf, type Page } from '../../lib/paging.js';
import { randomAlphanumeric, type Random } from '../../lib/random.js';
import { checkTtl, normalizeDnsNames } from '../issuance/policy.js';
import { refuseReserved } from '../issuance/reserved.js';
import { notifyChange } from '../db/changes.js';
import type { TrustDomainStore } from '../trust-domains/store.js';
import { TTL_LIMITS } from '../trust-domains/model.js';
import { DEFAULT_ENTRY_ADMIN_ROLE, type Role } from '../admin-auth/model.js';
import type { ChangeObserver } from '../admin-auth/record.js';
import type { Entry, EntryFilter, NewEntry } from './model.js';
import type { EntryStore } from './store.js';
import { checkSelectors } from './selectors.js';
import { normalizeSelectors, parseId, parseTrustDomains } from './validation.js';

export interface EntryInput {
  readonly spiffeId: string;
  readonly parentId: string;
  readonly selectors: readonly string[];
  readonly x509SvidTtl?: number | null | undefined;
  readonly jwtSvidTtl?: number | null | undefined;
  readonly dnsNames?: readonly string[] | undefined;
  readonly hint?: string | null | undefined;
  readonly admin?: boolean | undefined;
  /** Implies admin; default (admin without a role) DEFAULT_ENTRY_ADMIN_ROLE. */
  readonly adminRole?: Role | null | undefined;
  readonly federatesWith?: readonly string[] | undefined;
  readonly expiresAt?: string | null | undefined;
  /** Store selectors of types Cairn does not know (request-only; never stored). */
  readonly allowUnknownSelectorTypes?: boolean | undefined;
}

/** Which foreign trust domains an entry may federate with (ca/federation/). */
export interface FederationFacts {
  /** A trust domain hosted here, or one whose bundle `trustDomain` holds. */
  canFederate(trustDomain: string, foreign: string): Promise<boolean>;
}

/**
 * A federated trust domain must be one whose bundle can be delivered: hosted here, or with a bundle
 * held by `trustDomain` (cairn bundle set, or a federation relationship).
 */
export async function checkFederatesWith(federation: FederationFacts, trustDomain: string, names: readonly string[]): Promise<void> {
  for (const name of names) {
    if (await federation.canFederate(trustDomain, name)) continue;
    throw new CairnError(
      'unknown_federated_trust_domain',
      `federatesWith: ${name} is neither a trust domain of this CA nor one whose bundle ${trustDomain} holds; set its bundle first (cairn bundle set --trust-domain ${trustDomain} --foreign ${name} --file F)`,
      { details: { trustDomain: name } },
    );
  }
}

export interface EntryDeps {
  readonly federation: FederationFacts;
  readonly clock: Clock;
  readonly random: Random;
  readonly logger: Logger;
  readonly store: EntryStore;
  readonly trustDomains: TrustDomainStore;
}

export class EntryService {
  constructor(private readonly deps: EntryDeps) {}

  /** Names the entry already had are not checked again, so an unrelated update of an entry whose foreign bundle was deleted with force still works. */
  private checkFederation(trustDomain: string, names: readonly string[], already: readonly string[] = []): Promise<void> {
    return checkFederatesWith(this.deps.federation, trustDomain, names.filter((n) => !already.includes(n)));
  }

  /** `trustDomainExists` lets a batch look each trust domain up once. */
  private async validate(id: string, input: EntryInput, trustDomainExists = async (name: string) => (await this.deps.trustDomains.get(name)) !== undefined): Promise<NewEntry> {
    const spiffeId = parseId(input.spiffeId, 'spiffeId');
    if (spiffeId.isTrustDomainId) throw new CairnError('invalid_spiffe_id', 'spiffeId must have a path');
    refuseReserved(spiffeId);
    const parentId = parseId(input.parentId, 'parentId');
    if (!parentId.memberOf(spiffeId.trustDomain)) throw new CairnError('wrong_trust_domain', 'parentId must be in the same trust domain as spiffeId');
    if (parentId.isTrustDomainId) throw new CairnError('invalid_spiffe_id', 'parentId must have a path (an agent ID or a node alias)');
    if (!(await trustDomainExists(spiffeId.trustDomain))) {
      throw new CairnError('trust_domain_not_found', `trust domain ${spiffeId.trustDomain} does not exist`);
    }
    const hint = input.hint ?? null;
    if (hint !== null && (hint.length > 1024 || /[\u0000-\u001f]/.test(hint))) throw new CairnError('invalid_request', 'hint must be at most 1024 printable characters');
    let expiresAt: Date | null = null;
    if (input.expiresAt) {
      expiresAt = new Date(input.expiresAt);
      if (Number.isNaN(expiresAt.getTime())) throw new CairnError('invalid_request', 'expiresAt must be an RFC 3339 timestamp');
    }
    if (input.adminRole != null && input.admin === false) throw new CairnError('invalid_request', 'adminRole is for admin entries: drop it or set admin');
    const admin = input.admin ?? (input.adminRole != null);
    const selectors = normalizeSelectors(input.selectors);
    // An entry parented to the server is a node alias: it matches node selectors, not workloads'.
    checkSelectors(selectors, parentId.path === '/cairn/server' ? 'node-alias' : 'workload', { allowUnknownTypes: input.allowUnknownSelectorTypes });
    return {
      id,
      trustDomain: spiffeId.trustDomain,
      spiffeId: spiffeId.toString(),
      parentId: parentId.toString(),
      selectors,
      x509SvidTtlSeconds: input.x509SvidTtl == null ? null : checkTtl(input.x509SvidTtl, TTL_LIMITS.x509SvidTtlSeconds, 'x509SvidTtl'),
      jwtSvidTtlSeconds: input.jwtSvidTtl == null ? null : checkTtl(input.jwtSvidTtl, TTL_LIMITS.jwtSvidTtlSeconds, 'jwtSvidTtl'),
      dnsNames: normalizeDnsNames(input.dnsNames ?? []),
      hint,
      admin,
      adminRole: admin ? (input.adminRole ?? DEFAULT_ENTRY_ADMIN_ROLE) : null,
      federatesWith: parseTrustDomains(input.federatesWith ?? [], spiffeId.trustDomain),
      expiresAt,
    };
  }

  /** A collision on the identity (SPIFFE ID, parent, selectors) names the entry that holds it. */
  private async namingExisting<T>(entry: NewEntry, work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch (err) {
      if (!isCairnError(err, 'entry_exists')) throw err;
      const existing = await this.deps.store.findIdentity(entry);
      if (!existing || existing.id === entry.id) throw err;
      throw new CairnError('entry_exists', `registration entry ${existing.id} already has this SPIFFE ID, parent ID and selectors`, {
        cause: err,
        details: { existingId: existing.id },
      });
    }
  }

  async create(input: EntryInput, actor: string): Promise<Entry> {
    const entry = await this.validate(randomAlphanumeric(this.deps.random, 24), input);
    await this.checkFederation(entry.trustDomain, entry.federatesWith);
    const now = this.deps.clock.now();
    const created = await this.namingExisting(entry, () =>
      this.deps.store.write(async (tx) => {
        const e = await this.deps.store.insert(tx, entry, now);
        await notifyChange(tx, { kind: 'entries', trustDomain: e.trustDomain, parents: [e.parentId] });
        return e;
      }),
    );
    this.deps.logger.info({ event: 'entry.created', entryId: created.id, spiffeId: created.spiffeId, parentId: created.parentId, actor }, 'registration entry created');
    return created;
  }

  /**
   * Creates each input as `create` would, all in one transaction under one acquisition of the write
   * lock, one insert statement and one change notification per trust domain. An input that `create`
   * would refuse (invalid, a duplicate of a stored entry or of an earlier input) gets its error in its
   * slot and the others are created; anything else (the database away) fails the whole batch.
   */
  async createMany(inputs: readonly EntryInput[], actor: string): Promise<BatchOutcome[]> {
    const outcomes: BatchOutcome[] = new Array(inputs.length);
    const trustDomains = memo(async (name: string) => (await this.deps.trustDomains.get(name)) !== undefined);
    const canFederate = memo((key: string) => {
      const [trustDomain, foreign] = key.split('\n') as [string, string];
      return this.deps.federation.canFederate(trustDomain, foreign);
    });
    const federation: FederationFacts = { canFederate: (trustDomain, foreign) => canFederate(`${trustDomain}\n${foreign}`) };
    const valid: { index: number; entry: NewEntry }[] = [];
    const firstOf = new Map<string, number>();
    for (const [index, input] of inputs.entries()) {
      try {
        const entry = await this.validate(randomAlphanumeric(this.deps.random, 24), input, trustDomains);
        await checkFederatesWith(federation, entry.trustDomain, entry.federatesWith);
        const key = identityKey(entry);
        const first = firstOf.get(key);
        if (first !== undefined) {
          outcomes[index] = { error: new CairnError('entry_exists', `entries[${first}] has the same SPIFFE ID, parent ID and selectors`, { details: { item: first } }) };
          continue;
        }
        firstOf.set(key, index);
        valid.push({ index, entry });
      } catch (err) {
        if (!isItemError(err)) throw err;
        outcomes[index] = { error: err };
      }
    }
    const now = this.deps.clock.now();
    // nothing valid: no lock, no transaction, no notification
    const { created, held } = valid.length === 0 ? { created: [], held: [] } : await this.deps.store.write(async (tx) => {
      const created = await this.deps.store.insertMany(tx, valid.map((v) => v.entry), now);
      const byTrustDomain = new Map<string, Set<string>>();
      for (const e of created) {
        const parents = byTrustDomain.get(e.trustDomain) ?? new Set<string>();
        parents.add(e.parentId);
        byTrustDomain.set(e.trustDomain, parents);
      }
      for (const [trustDomain, parents] of byTrustDomain) await notifyChange(tx, { kind: 'entries', trustDomain, parents: [...parents] });
      const ids = new Set(created.map((e) => e.id));
      // the skipped ones collided with a stored entry: name it, as create does
      const held = await this.deps.store.findIdentities(valid.filter((v) => !ids.has(v.entry.id)).map((v) => v.entry), tx);
      return { created, held };
    });
    const createdById = new Map(created.map((e) => [e.id, e]));
    const holders = new Map(held.map((e) => [identityKey(e), e]));
    for (const { index, entry } of valid) {
      const made = createdById.get(entry.id);
      if (made) {
        outcomes[index] = { entry: made };
        this.deps.logger.info({ event: 'entry.created', entryId: made.id, spiffeId: made.spiffeId, parentId: made.parentId, actor }, 'registration entry created');
        continue;
      }
      const existing = holders.get(identityKey(entry));
      outcomes[index] = {
        error: existing
          ? new CairnError('entry_exists', `registration entry ${existing.id} already has this SPIFFE ID, parent ID and selectors`, { details: { existingId: existing.id } })
          : new CairnError('entry_exists', 'an entry with this ID or identity already exists'),
      };
    }
    // a duplicate of an earlier input names the entry that input became
    for (const [index, outcome] of outcomes.entries()) {
      const first = 'error' in outcome && isCairnError(outcome.error, 'entry_exists') ? (outcome.error.details?.item as number | undefined) : undefined;
      const holder = first === undefined ? undefined : outcomes[first];
      const id = holder === undefined ? undefined : 'entry' in holder ? holder.entry.id : (holder.error.details?.existingId as string | undefined);
      if (id !== undefined) outcomes[index] = { error: new CairnError('entry_exists', `registration entry ${id} already has this SPIFFE ID, parent ID and selectors (entries[${first}])`, { details: { existingId: id } }) };
    }
    return outcomes;
  }

  async get(id: string): Promise<Entry> {
    const entry = await this.deps.store.get(id);
    if (!entry) throw new CairnError('entry_not_found', `registration entry ${id} does not exist`);
    return entry;
  }

  list(filter: EntryFilter, pageSize: number | undefined, pageToken: string | undefined): Promise<Page<Entry>> {
    const after = decodePageToken(pageToken, 1)?.[0] as string | undefined;
    const normalized: EntryFilter = {
      trustDomain: filter.trustDomain,
      trustDomains: filter.trustDomains,
      parentId: filter.parentId === undefined ? undefined : parseId(filter.parentId, 'parentId').toString(),
      spiffeId: filter.spiffeId === undefined ? undefined : parseId(filter.spiffeId, 'spiffeId').toString(),
      selectors: filter.selectors === undefined ? undefined : normalizeSelectors(filter.selectors, { allowEmpty: true }),
    };
    return this.deps.store.list(normalized, pageSizeOf(pageSize), after);
  }

  /** Applies a partial change; a change of parent leaves a tombstone so the old parent's agents drop it. */
  async update(id: string, patch: Partial<EntryInput>, actor: string, observe?: ChangeObserver<Entry>): Promise<Entry> {
    const current = await this.get(id);
    const merged: EntryInput = {
      spiffeId: patch.spiffeId ?? current.spiffeId,
      parentId: patch.parentId ?? current.parentId,
      selectors: patch.selectors ?? current.selectors,
      x509SvidTtl: patch.x509SvidTtl === undefined ? current.x509SvidTtlSeconds : patch.x509SvidTtl,
      jwtSvidTtl: patch.jwtSvidTtl === undefined ? current.jwtSvidTtlSeconds : patch.jwtSvidTtl,
      dnsNames: patch.dnsNames ?? current.dnsNames,
      hint: patch.hint === undefined ? current.hint : patch.hint,
      // turning admin off drops the role; giving a role turns admin on
      admin: patch.admin ?? (patch.adminRole != null ? true : current.admin),
      adminRole: patch.adminRole !== undefined ? patch.adminRole : patch.admin === false ? null : current.adminRole,
      federatesWith: patch.federatesWith ?? current.federatesWith,
      expiresAt: patch.expiresAt === undefined ? current.expiresAt?.toISOString() ?? null : patch.expiresAt,
      allowUnknownSelectorTypes: patch.allowUnknownSelectorTypes,
    };
    const next = await this.validate(id, merged);
    if (next.trustDomain !== current.trustDomain) throw new CairnError('wrong_trust_domain', 'an entry cannot move to another trust domain');
    await this.checkFederation(next.trustDomain, next.federatesWith, current.federatesWith);
    const now = this.deps.clock.now();
    const updated = await this.namingExisting(next, () =>
      this.deps.store.write(async (tx) => {
        const before = await this.deps.store.get(id, tx);
        if (!before) throw new CairnError('entry_not_found', `registration entry ${id} does not exist`);
        if (before.parentId !== next.parentId) await this.deps.store.tombstone(tx, before, now);
        const after = await this.deps.store.replace(tx, next, now);
        await notifyChange(tx, { kind: 'entries', trustDomain: next.trustDomain, parents: [before.parentId, next.parentId] });
        observe?.(before, after!);
        return after!;
      }),
    );
    this.deps.logger.info({ event: 'entry.updated', entryId: id, changes: Object.keys(patch).filter((k) => k !== 'allowUnknownSelectorTypes'), actor }, 'registration entry updated');
    return updated;
  }

  async delete(id: string, actor: string): Promise<Entry> {
    const now = this.deps.clock.now();
    const deleted = await this.deps.store.write(async (tx) => {
      const gone = await this.deps.store.delete(tx, id);
      if (!gone) throw new CairnError('entry_not_found', `registration entry ${id} does not exist`);
      await this.deps.store.tombstone(tx, gone, now);
      await notifyChange(tx, { kind: 'entries', trustDomain: gone.trustDomain, parents: [gone.parentId] });
      return gone;
    });
    this.deps.logger.info({ event: 'entry.deleted', entryId: id, actor }, 'registration entry deleted');
    return deleted;
  }
}

/** One input of a batch create: the entry made, or why it was not. */
export type BatchOutcome = { readonly entry: Entry } | { readonly error: CairnError };

/** The unique key of an entry: SPIFFE ID, parent and (normalized) selectors. */
const identityKey = (e: Pick<Entry, 'spiffeId' | 'parentId' | 'selectors'>): string => JSON.stringify([e.spiffeId, e.parentId, e.selectors]);

/** What create would answer with a 4xx: that input fails alone. A 5xx (the store away) fails them all. */
const isItemError = (err: unknown): err is CairnError => isCairnError(err) && statusOf(err.code).http < 500;

/** One lookup per key for the length of a batch. */
function memo<T>(fn: (key: string) => Promise<T>): (key: string) => Promise<T> {
  const seen = new Map<string, Promise<T>>();
  return (key) => {
    let p = seen.get(key);
    if (!p) seen.set(key, (p = fn(key)));
    return p;
  };
}
