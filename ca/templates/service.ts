import { parseIdTemplate, renderIdTemplate, splitPlaceholders, TemplateSyntaxError, type RenderResult } from '../../contract/id-template.js';
import type { Clock } from '../../lib/clock.js';
import { CairnError, isCairnError } from '../../lib/errors.js';
import type { Logger } from '../../lib/log.js';
import { decodePageToken, pageSizeOf, type Page } from '../../lib/paging.js';
import { randomAlphanumeric, type Random } from '../../lib/random.js';
import { DEFAULT_ENTRY_ADMIN_ROLE, type Role } from '../admin-auth/model.js';
import type { AuditAppender } from '../audit/port.js';
import { notifyChange } from '../db/changes.js';
import { checkPlaceholder, checkSelectors, isBindingSelector } from '../entries/selectors.js';
import { normalizeSelectors, parseId, parseTrustDomains } from '../entries/validation.js';
import { checkTtl, normalizeDnsNames } from '../issuance/policy.js';
import { refuseReserved } from '../issuance/reserved.js';
import { TTL_LIMITS } from '../trust-domains/model.js';
import type { TrustDomainStore } from '../trust-domains/store.js';
import { parseTrustDomain, SpiffeId } from '../../spiffe/id.js';
import type { IdentityTemplate, NewTemplate, TemplateFilter } from './model.js';
import type { TemplateStore } from './store.js';
import { checkFederatesWith, type FederationFacts } from '../entries/service.js';

export interface TemplateInput {
  readonly trustDomain: string;
  readonly parentId: string;
  readonly spiffeIdTemplate: string;
  readonly selectors?: readonly string[] | undefined;
  readonly dnsTemplates?: readonly string[] | undefined;
  readonly x509SvidTtl?: number | null | undefined;
  readonly jwtSvidTtl?: number | null | undefined;
  readonly hint?: string | null | undefined;
  readonly admin?: boolean | undefined;
  readonly adminRole?: Role | null | undefined;
  readonly federatesWith?: readonly string[] | undefined;
  readonly allowUnknownSelectorTypes?: boolean | undefined;
}

export interface TemplateDeps {
  readonly clock: Clock;
  readonly random: Random;
  readonly logger: Logger;
  readonly store: TemplateStore;
  readonly trustDomains: TrustDomainStore;
  readonly audit: AuditAppender;
  /** Which foreign trust domains a template may federate with (ca/federation/). */
  readonly federation: FederationFacts;
}

const invalidTemplate = (field: string, err: unknown): CairnError =>
  err instanceof TemplateSyntaxError && err.kind === 'wrong_trust_domain'
    ? new CairnError('wrong_trust_domain', `${field}: ${err.message}`, { cause: err })
    : new CairnError('invalid_id_template', `${field}: ${(err as Error).message}`, { cause: err });

/**
 * What a template renders to for the selectors an agent vouches for, checked as the CA issues: the
 * caller must have the template's selectors, and the ID (and DNS names) come from the CA's own
 * rendering, never from the agent. Refusals are `template_refused` with the reason.
 */
export function renderForIssuance(t: IdentityTemplate, claimed: readonly string[]): { spiffeId: SpiffeId; dnsNames: string[] } {
  const have = new Set(claimed);
  const missing = t.selectors.filter((s) => !have.has(s));
  if (missing.length > 0) throw new CairnError('template_refused', `template ${t.id} requires selectors ${missing.join(' ')} that the caller does not have`);
  const r: RenderResult = renderIdTemplate(t.spiffeIdTemplate, t.dnsTemplates, t.trustDomain, claimed);
  if (!r.ok) throw new CairnError('template_refused', `template ${t.id}: ${r.reason}`);
  const spiffeId = SpiffeId.parse(r.spiffeId);
  if (!spiffeId.memberOf(t.trustDomain)) throw new CairnError('template_refused', `template ${t.id} rendered ${r.spiffeId}, outside trust domain ${t.trustDomain}`);
  refuseReserved(spiffeId);
  let dnsNames: string[];
  try {
    dnsNames = normalizeDnsNames(r.dnsNames);
  } catch (err) {
    throw new CairnError('template_refused', `template ${t.id}: the rendered DNS names are invalid: ${(err as Error).message}`, { cause: err });
  }
  return { spiffeId, dnsNames };
}

export class TemplateService {
  constructor(private readonly deps: TemplateDeps) {}

  private async validate(id: string, input: TemplateInput): Promise<NewTemplate> {
    let trustDomain: string;
    try {
      trustDomain = parseTrustDomain(input.trustDomain);
    } catch (err) {
      throw new CairnError('invalid_trust_domain', `trustDomain: ${(err as Error).message}`, { cause: err });
    }
    const parentId = parseId(input.parentId, 'parentId');
    if (!parentId.memberOf(trustDomain)) throw new CairnError('wrong_trust_domain', `parentId must be in trust domain ${trustDomain}`);
    if (parentId.isTrustDomainId) throw new CairnError('invalid_spiffe_id', 'parentId must have a path (an agent ID or a node alias)');
    if (parentId.path === '/cairn/server') throw new CairnError('invalid_spiffe_id', 'parentId: a template serves an agent\'s callers; name the agent ID or a node alias, not the server');
    if (!(await this.deps.trustDomains.get(trustDomain))) throw new CairnError('trust_domain_not_found', `trust domain ${trustDomain} does not exist`);
    let parsed;
    try {
      parsed = parseIdTemplate(input.spiffeIdTemplate, trustDomain);
    } catch (err) {
      throw invalidTemplate('spiffeIdTemplate', err);
    }
    // the literal prefix alone must not be Cairn's namespace (rendered IDs are checked again at issuance)
    const literal = parsed.parts.map((p) => ('text' in p ? p.text : p.placeholder === 'td' ? trustDomain : 'x')).join('');
    refuseReserved(SpiffeId.parse(`spiffe://${trustDomain}${literal}`));
    const allowUnknownTypes = input.allowUnknownSelectorTypes;
    let binding = parsed.placeholders.map((p) => checkPlaceholder(p, { allowUnknownTypes })).some(Boolean);
    const dnsTemplates = [...new Set(input.dnsTemplates ?? [])];
    for (const d of dnsTemplates) {
      let placeholders: string[];
      let sample: string;
      try {
        const split = splitPlaceholders(d);
        placeholders = split.placeholders;
        sample = split.parts.map((p) => ('text' in p ? p.text : p.placeholder === 'td' ? trustDomain : 'x')).join('');
      } catch (err) {
        throw invalidTemplate('dnsTemplates', err);
      }
      placeholders.forEach((p) => checkPlaceholder(p, { allowUnknownTypes }));
      try {
        normalizeDnsNames([sample]);
      } catch (err) {
        throw new CairnError('invalid_id_template', `dnsTemplates: ${JSON.stringify(d)} cannot give a valid DNS name: ${(err as Error).message}`, { cause: err });
      }
    }
    const selectors = normalizeSelectors(input.selectors ?? [], { allowEmpty: true });
    if (selectors.length > 0) {
      try {
        checkSelectors(selectors, 'workload', { allowUnknownTypes });
      } catch (err) {
        // weak required selectors are fine when the placeholders bind the caller (checked below)
        if (!isCairnError(err, 'weak_selectors')) throw err;
      }
      binding ||= selectors.some(isBindingSelector);
    }
    if (!binding && !allowUnknownTypes) {
      throw new CairnError('weak_selectors', 'neither the selectors nor the placeholders bind a caller to something it cannot change about itself: any local process would get this identity; use a placeholder such as {unix:uid} or {k8s:sa}, or a selector such as unix:uid:1000');
    }
    const hint = input.hint ?? null;
    if (hint !== null && (hint.length > 1024 || /[\u0000-\u001f]/.test(hint))) throw new CairnError('invalid_request', 'hint must be at most 1024 printable characters');
    if (input.adminRole != null && input.admin === false) throw new CairnError('invalid_request', 'adminRole is for admin templates: drop it or set admin');
    const admin = input.admin ?? (input.adminRole != null);
    return {
      id,
      trustDomain,
      parentId: parentId.toString(),
      selectors,
      spiffeIdTemplate: input.spiffeIdTemplate,
      dnsTemplates,
      x509SvidTtlSeconds: input.x509SvidTtl == null ? null : checkTtl(input.x509SvidTtl, TTL_LIMITS.x509SvidTtlSeconds, 'x509SvidTtl'),
      jwtSvidTtlSeconds: input.jwtSvidTtl == null ? null : checkTtl(input.jwtSvidTtl, TTL_LIMITS.jwtSvidTtlSeconds, 'jwtSvidTtl'),
      hint,
      admin,
      adminRole: admin ? (input.adminRole ?? DEFAULT_ENTRY_ADMIN_ROLE) : null,
      federatesWith: parseTrustDomains(input.federatesWith ?? [], trustDomain),
    };
  }

  async create(input: TemplateInput, actor: string): Promise<IdentityTemplate> {
    const template = await this.validate(randomAlphanumeric(this.deps.random, 24), input);
    await checkFederatesWith(this.deps.federation, template.trustDomain, template.federatesWith);
    const now = this.deps.clock.now();
    let created: IdentityTemplate;
    try {
      created = await this.deps.store.write(async (tx) => {
        const t = await this.deps.store.insert(tx, template, now);
        await this.deps.audit.append(tx, [{ event: 'template.created', actor, subject: { trustDomain: t.trustDomain, templateId: t.id, parentId: t.parentId, spiffeIdTemplate: t.spiffeIdTemplate, selectors: [...t.selectors], admin: t.admin } }]);
        await notifyChange(tx, { kind: 'entries', trustDomain: t.trustDomain, parents: [t.parentId] });
        return t;
      });
    } catch (err) {
      if (!isCairnError(err, 'template_exists')) throw err;
      const existing = await this.deps.store.findIdentity(template);
      throw new CairnError('template_exists', `${existing ? `template ${existing.id}` : 'a template'} already has this SPIFFE ID template, parent ID and selectors`, {
        cause: err,
        ...(existing ? { details: { existingId: existing.id } } : {}),
      });
    }
    this.deps.logger.info({ event: 'template.created', templateId: created.id, spiffeIdTemplate: created.spiffeIdTemplate, parentId: created.parentId, actor }, 'workload identity template created');
    return created;
  }

  async get(id: string): Promise<IdentityTemplate> {
    const t = await this.deps.store.get(id);
    if (!t) throw new CairnError('template_not_found', `template ${id} does not exist`);
    return t;
  }

  list(filter: TemplateFilter, pageSize: number | undefined, pageToken: string | undefined): Promise<Page<IdentityTemplate>> {
    const after = decodePageToken(pageToken, 1)?.[0] as string | undefined;
    return this.deps.store.list({ ...filter, parentId: filter.parentId === undefined ? undefined : parseId(filter.parentId, 'parentId').toString() }, pageSizeOf(pageSize), after);
  }

  async delete(id: string, actor: string): Promise<IdentityTemplate> {
    const now = this.deps.clock.now();
    const deleted = await this.deps.store.write(async (tx) => {
      const gone = await this.deps.store.delete(tx, id, now);
      if (!gone) throw new CairnError('template_not_found', `template ${id} does not exist`);
      await this.deps.audit.append(tx, [{ event: 'template.deleted', actor, subject: { trustDomain: gone.trustDomain, templateId: gone.id, parentId: gone.parentId, spiffeIdTemplate: gone.spiffeIdTemplate } }]);
      await notifyChange(tx, { kind: 'entries', trustDomain: gone.trustDomain, parents: [gone.parentId] });
      return gone;
    });
    this.deps.logger.info({ event: 'template.deleted', templateId: id, actor }, 'workload identity template deleted');
    return deleted;
  }
}
