import type { Role } from './model.js';

/**
 * THE access table of the admin API: for every admin route, the weakest role that may call it, the
 * action recorded for it, and where its trust domain is found for scope checks. A route with no row
 * is refused to everyone (deny by default), and test/integration/admin-roles.test.ts fails while any
 * registered admin route has no row here, or a row names no route.
 *
 * Adding an admin route: add its row here, keyed `METHOD /path/:param` exactly as the route is
 * registered. Pick the role by what the route does (viewer: reads; operator: entries, tokens, agents,
 * SVIDs; admin: trust domains, attestors, authorities, admin credentials) and say where its trust
 * domain is, so a credential scoped to some trust domains cannot reach the others through it.
 */
export type TrustDomainRule =
  /** A path parameter holds the trust domain's name. */
  | { readonly from: 'param'; readonly name: string }
  /**
   * Body fields: `names` hold a trust domain's name, `ids` a SPIFFE ID whose trust domain counts. Each
   * one present must be in scope, and a scoped credential must give at least one.
   */
  | { readonly from: 'body'; readonly names: readonly string[]; readonly ids: readonly string[] }
  /** A path parameter names a registration entry; the stored entry's trust domain counts (and a new spiffeId's). */
  | { readonly from: 'entry'; readonly param: string }
  /**
   * A batch: the body array `items` holds requests of their own, each naming its trust domain by the
   * SPIFFE ID in its first present `ids` field. Every item must be in scope and pass the route's guard,
   * or the whole request is refused: authorization is decided before any work, as for one item.
   */
  | { readonly from: 'items'; readonly items: string; readonly ids: readonly string[] }
  /** A path parameter names a workload identity template; the stored template's trust domain counts. */
  | { readonly from: 'template'; readonly param: string }
  /**
   * A list. The query filter `query`, when given, must be in scope; without it the handler lists only
   * the credential's trust domains (listScope), and every item's `field` under `items` is checked
   * before the answer leaves: an item out of scope fails the request instead of leaking.
   */
  | { readonly from: 'list'; readonly query: string | undefined; readonly items: string; readonly field: string }
  /** About no trust domain: any scope may call. Read-only rows only (the table test holds this). */
  | { readonly from: 'none' }
  /** Installation-wide (admin credentials): only a credential scoped to every trust domain. */
  | { readonly from: 'installation' };

/**
 * Extra checks for rules a role alone cannot express; they apply to roles below admin.
 * - entryWrite: an admin entry, and an entry that parents one (a node alias), is written by admins only
 *   (an operator who could edit one could hand its admin SVIDs to a workload of their own).
 * - tokenCreate: no join token whose agent would serve an admin entry (by its agent ID or, through node
 *   aliases, by its selectors).
 * - agentUnban: no unbanning an agent that serves an admin entry.
 * - templateWrite: an admin template (its SVIDs are admin credentials) is created and deleted by admins only.
 */
export type Guard = 'entryWrite' | 'tokenCreate' | 'agentUnban' | 'templateWrite';

export interface RouteRule {
  readonly role: Role;
  /** Recorded as the action, `<object>.<verb>`. */
  readonly action: string;
  readonly trustDomain: TrustDomainRule;
  readonly guard?: Guard;
  /**
   * A change that commits in transactions of its own, so its admin record is written after the
   * answer: the route acts outside the database once a commit has happened (a new KEK file, an
   * exported checkpoint), which a request-wide transaction would put before the commit. Its own
   * transactions carry the domain events (`kek.rotated`). Every other change is recorded in the
   * request's transaction, with the change (AdminAccess).
   */
  readonly ownTransactions?: true;
  /** A batch route (trust domain `items`) records each item as this action, as if it had been its own request. */
  readonly itemAction?: string;
}

const param = (name: string): TrustDomainRule => ({ from: 'param', name });
const body = (...names: string[]): TrustDomainRule => ({ from: 'body', names, ids: [] });
const bodyId = (...ids: string[]): TrustDomainRule => ({ from: 'body', names: [], ids });
const bodyEither = (name: string, id: string): TrustDomainRule => ({ from: 'body', names: [name], ids: [id] });
const entry = (p: string): TrustDomainRule => ({ from: 'entry', param: p });
const items = (field: string, ...ids: string[]): TrustDomainRule => ({ from: 'items', items: field, ids });
const template = (p: string): TrustDomainRule => ({ from: 'template', param: p });
const list = (query: string | undefined, items: string, field: string): TrustDomainRule => ({ from: 'list', query, items, field });
const NONE: TrustDomainRule = { from: 'none' };
const INSTALLATION: TrustDomainRule = { from: 'installation' };

export const ADMIN_ROUTES: Readonly<Record<string, RouteRule>> = {
  // trust domains
  'POST /v1/trust-domains': { role: 'admin', action: 'trust_domain.create', trustDomain: body('name') },
  'GET /v1/trust-domains': { role: 'viewer', action: 'trust_domain.list', trustDomain: list(undefined, 'trustDomains', 'name') },
  'GET /v1/trust-domains/:name': { role: 'viewer', action: 'trust_domain.show', trustDomain: param('name') },
  'PATCH /v1/trust-domains/:name': { role: 'admin', action: 'trust_domain.update', trustDomain: param('name') },
  'DELETE /v1/trust-domains/:name': { role: 'admin', action: 'trust_domain.delete', trustDomain: param('name') },

  // node attestors
  'GET /v1/trust-domains/:trustDomain/attestors': { role: 'viewer', action: 'attestor.list', trustDomain: param('trustDomain') },
  'PUT /v1/trust-domains/:trustDomain/attestors/k8s-psat/:name': { role: 'admin', action: 'attestor.configure', trustDomain: param('trustDomain') },
  'PUT /v1/trust-domains/:trustDomain/attestors/x509pop/:name': { role: 'admin', action: 'attestor.configure', trustDomain: param('trustDomain') },
  'DELETE /v1/trust-domains/:trustDomain/attestors/:kind/:name': { role: 'admin', action: 'attestor.remove', trustDomain: param('trustDomain') },
  'GET /v1/ca/tls': { role: 'viewer', action: 'ca.tls', trustDomain: NONE },

  // authorities (signing keys): the operator's levers after a compromise are the admin's
  'GET /v1/trust-domains/:name/authorities': { role: 'viewer', action: 'authority.list', trustDomain: param('name') },
  'POST /v1/trust-domains/:name/authorities/prepare': { role: 'admin', action: 'authority.prepare', trustDomain: param('name') },
  'POST /v1/trust-domains/:name/authorities/activate': { role: 'admin', action: 'authority.activate', trustDomain: param('name') },
  'POST /v1/trust-domains/:name/authorities/import': { role: 'admin', action: 'authority.import', trustDomain: param('name') },
  'POST /v1/trust-domains/:name/authorities/:id/taint': { role: 'admin', action: 'authority.taint', trustDomain: param('name') },
  'POST /v1/trust-domains/:name/authorities/:id/revoke': { role: 'admin', action: 'authority.revoke', trustDomain: param('name') },

  // federation: foreign trust domains' bundles, held per local trust domain (they decide whom its workloads trust)
  'GET /v1/trust-domains/:trustDomain/federation/bundles': { role: 'viewer', action: 'federation.bundle_list', trustDomain: param('trustDomain') },
  'GET /v1/trust-domains/:trustDomain/federation/bundles/:foreign': { role: 'viewer', action: 'federation.bundle_show', trustDomain: param('trustDomain') },
  'PUT /v1/trust-domains/:trustDomain/federation/bundles/:foreign': { role: 'admin', action: 'federation.bundle_set', trustDomain: param('trustDomain') },
  'DELETE /v1/trust-domains/:trustDomain/federation/bundles/:foreign': { role: 'admin', action: 'federation.bundle_delete', trustDomain: param('trustDomain') },
  'POST /v1/trust-domains/:trustDomain/federation/relationships': { role: 'admin', action: 'federation.create', trustDomain: param('trustDomain') },
  'GET /v1/trust-domains/:trustDomain/federation/relationships': { role: 'viewer', action: 'federation.list', trustDomain: param('trustDomain') },
  'GET /v1/trust-domains/:trustDomain/federation/relationships/:foreign': { role: 'viewer', action: 'federation.show', trustDomain: param('trustDomain') },
  'DELETE /v1/trust-domains/:trustDomain/federation/relationships/:foreign': { role: 'admin', action: 'federation.delete', trustDomain: param('trustDomain') },
  'POST /v1/trust-domains/:trustDomain/federation/relationships/:foreign/refresh': { role: 'admin', action: 'federation.refresh', trustDomain: param('trustDomain') },

  // SVIDs
  'POST /v1/x509-svids': { role: 'operator', action: 'x509_svid.mint', trustDomain: bodyId('spiffeId') },
  'GET /v1/x509-svids': { role: 'viewer', action: 'x509_svid.list', trustDomain: list('trustDomain', 'svids', 'trustDomain') },
  'POST /v1/jwt-svids': { role: 'operator', action: 'jwt_svid.mint', trustDomain: bodyId('spiffeId') },
  // by serial (with trustDomain for a scoped credential) or by SPIFFE ID
  'POST /v1/x509-svids/revoke': { role: 'operator', action: 'x509_svid.revoke', trustDomain: bodyEither('trustDomain', 'spiffeId') },
  'GET /v1/x509-svids/revoked': { role: 'viewer', action: 'x509_svid.revoked', trustDomain: list('trustDomain', 'svids', 'trustDomain') },

  // tokens, entries, agents
  'POST /v1/tokens': { role: 'operator', action: 'token.create', trustDomain: body('trustDomain'), guard: 'tokenCreate' },
  'POST /v1/entries': { role: 'operator', action: 'entry.create', trustDomain: bodyId('spiffeId'), guard: 'entryWrite' },
  'POST /v1/entries/batch': { role: 'operator', action: 'entry.batch_create', itemAction: 'entry.create', trustDomain: items('entries', 'spiffeId'), guard: 'entryWrite' },
  'GET /v1/entries': { role: 'viewer', action: 'entry.list', trustDomain: list('trustDomain', 'entries', 'trustDomain') },
  'GET /v1/entries/:id': { role: 'viewer', action: 'entry.show', trustDomain: entry('id') },
  'PATCH /v1/entries/:id': { role: 'operator', action: 'entry.update', trustDomain: entry('id'), guard: 'entryWrite' },
  'DELETE /v1/entries/:id': { role: 'operator', action: 'entry.delete', trustDomain: entry('id'), guard: 'entryWrite' },
  'POST /v1/templates': { role: 'operator', action: 'template.create', trustDomain: body('trustDomain'), guard: 'templateWrite' },
  'GET /v1/templates': { role: 'viewer', action: 'template.list', trustDomain: list('trustDomain', 'templates', 'trustDomain') },
  'GET /v1/templates/:id': { role: 'viewer', action: 'template.show', trustDomain: template('id') },
  'DELETE /v1/templates/:id': { role: 'operator', action: 'template.delete', trustDomain: template('id'), guard: 'templateWrite' },
  'GET /v1/agents': { role: 'viewer', action: 'agent.list', trustDomain: list('trustDomain', 'agents', 'trustDomain') },
  // a ban names a SPIFFE ID, or a device fingerprint or node UID with its trust domain
  'POST /v1/agents/ban': { role: 'operator', action: 'agent.ban', trustDomain: bodyEither('trustDomain', 'spiffeId') },
  'POST /v1/agents/unban': { role: 'operator', action: 'agent.unban', trustDomain: bodyEither('trustDomain', 'spiffeId'), guard: 'agentUnban' },
  'GET /v1/agents/bans': { role: 'viewer', action: 'agent.bans', trustDomain: list('trustDomain', 'bans', 'trustDomain') },
  'POST /v1/agents/evict': { role: 'operator', action: 'agent.evict', trustDomain: bodyId('spiffeId') },

  // admin credentials
  'POST /v1/admins': { role: 'admin', action: 'admin.create', trustDomain: INSTALLATION },
  'GET /v1/admins': { role: 'viewer', action: 'admin.list', trustDomain: INSTALLATION },
  'DELETE /v1/admins/:name': { role: 'admin', action: 'admin.revoke', trustDomain: INSTALLATION },
  'GET /v1/kek': { role: 'viewer', action: 'kek.status', trustDomain: INSTALLATION },
  'POST /v1/kek/rotate': { role: 'admin', action: 'kek.rotate', trustDomain: INSTALLATION, ownTransactions: true },

  // the audit log: it spans every trust domain, so installation-wide credentials only
  'GET /v1/audit/checkpoint': { role: 'viewer', action: 'audit.checkpoint', trustDomain: INSTALLATION },
  'POST /v1/audit/checkpoint': { role: 'admin', action: 'audit.sign', trustDomain: INSTALLATION, ownTransactions: true },
  'GET /v1/audit/entries': { role: 'viewer', action: 'audit.entries', trustDomain: INSTALLATION },
  'GET /v1/audit/proof/inclusion': { role: 'viewer', action: 'audit.inclusion_proof', trustDomain: INSTALLATION },
  'GET /v1/audit/proof/consistency': { role: 'viewer', action: 'audit.consistency_proof', trustDomain: INSTALLATION },
  'GET /v1/audit/key': { role: 'viewer', action: 'audit.key', trustDomain: INSTALLATION },
  'GET /v1/audit/search': { role: 'viewer', action: 'audit.search', trustDomain: INSTALLATION },
};

/** The row for a request's route (HEAD answers as its GET); undefined: no row, so denied. */
export function ruleFor(method: string, url: string | undefined, table: Readonly<Record<string, RouteRule>> = ADMIN_ROUTES): RouteRule | undefined {
  if (url === undefined) return undefined;
  const key = `${method === 'HEAD' ? 'GET' : method} ${url}`;
  return Object.hasOwn(table, key) ? table[key] : undefined;
}
