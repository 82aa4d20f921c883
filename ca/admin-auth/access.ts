import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Clock } from '../../lib/clock.js';
import { CairnError, isCairnError } from '../../lib/errors.js';
import { SpiffeId } from '../../spiffe/id.js';
import { peerChain } from '../enrollment/routes.js';
import { toHttpError } from '../http/errors.js';
import type { App } from '../http/types.js';
import { checkGuard, type AdminEntryFacts } from './guards.js';
import { describeScope, inScope, roleAtLeast, type AdminPrincipal } from './model.js';
import type { Queryable } from '../db/database.js';
import type { AdminRecord, AdminRecordSink, ChangeNote } from './record.js';
import { ADMIN_ROUTES, ruleFor, type Guard, type RouteRule } from './route-table.js';
import type { AdminAuthService, BearerResult } from './service.js';
import type { SvidAdminAuth, SvidResult } from './svid.js';

/** What the admin context knows about one request, from authentication to its record. */
export interface AdminRequestState {
  credential: 'token' | 'svid' | 'none';
  principal?: AdminPrincipal;
  /** Authentication failed; `attempted` names the expired credential or the SPIFFE ID claimed, if any. */
  failed?: boolean;
  attempted?: string | undefined;
  rule?: RouteRule | undefined;
  /** What the request acts on, found by the rule (a trust domain, a SPIFFE ID, an entry ID). */
  subject?: string | undefined;
  trustDomain?: string | undefined;
  /** For a list: the trust domains it may show; undefined: all. */
  listScope?: readonly string[] | undefined;
  note?: ChangeNote;
  /** A batch route's items, each recorded as its own request would have been (noteItems). */
  items?: readonly ItemNote[];
  errorCode?: string;
  /** The change's transaction, from the handler to its record (a write with a route rule). */
  transaction?: RequestScope | undefined;
  /** The record was written with the change; the response hook has nothing left to write. */
  recorded?: boolean;
}

/** One request's transaction (ca/db/request-transactions.ts): every query the handler makes, then the record. */
export interface RequestScope {
  finish(last: (q: Queryable) => Promise<void>): Promise<void>;
  abandon(): Promise<void>;
}

export interface RequestScopes {
  /** Runs `next` (the rest of the request) inside a new request transaction. */
  begin(next: () => void): RequestScope;
}

export interface AdminAccessDeps {
  readonly clock: Clock;
  readonly tokens: Pick<AdminAuthService, 'verifyBearer'>;
  readonly svids: Pick<SvidAdminAuth, 'verify'>;
  readonly facts: AdminEntryFacts;
  readonly sink: AdminRecordSink;
  /** Request transactions over the database the services use; absent, records are written after the answer. */
  readonly transactions?: RequestScopes | undefined;
  /** The route table; tests hand in others. */
  readonly table?: Readonly<Record<string, RouteRule>>;
}

const READS = new Set(['GET', 'HEAD', 'OPTIONS']);

const denied = (principal: AdminPrincipal, message: string, details: Record<string, unknown> = {}): CairnError =>
  new CairnError('permission_denied', `${principal.name} (role ${principal.role}, scope ${describeScope(principal.trustDomains)}) ${message}`, { details: { role: principal.role, ...details } });

const stateOf = (req: FastifyRequest): AdminRequestState | undefined => req.adminState;

/** The trust domains a list route may show for this request (undefined: all); list handlers pass it to their store. */
export function listScope(req: FastifyRequest): readonly string[] | undefined {
  return stateOf(req)?.listScope;
}

/** A handler's account of what it changed (target, old → new), for the request's record. */
export function noteChange(req: FastifyRequest, note: ChangeNote): void {
  const state = stateOf(req);
  if (state) state.note = { ...state.note, ...note };
}

/** One item of a batch as recorded: what it changed, and the status and error code it would have had alone. */
export interface ItemNote {
  readonly note: ChangeNote;
  readonly status: number;
  readonly code?: string | undefined;
}

/** A batch handler's account of its items, in order: each becomes a record of the route's itemAction. */
export function noteItems(req: FastifyRequest, items: readonly ItemNote[]): void {
  const state = stateOf(req);
  if (state) state.items = items;
}

/**
 * Authentication, authorization and the record of the admin API, in one place. Every admin
 * request is authenticated by a bearer credential or an admin SVID, then held to the route table
 * (role, trust-domain scope, guards); every change, refusal and failed authentication is recorded.
 */
export class AdminAccess {
  private readonly table: Readonly<Record<string, RouteRule>>;

  constructor(private readonly deps: AdminAccessDeps) {
    this.table = deps.table ?? ADMIN_ROUTES;
  }

  /** Registers the hooks on the admin context; no admin route can skip them. */
  install(app: App): void {
    app.addHook('onRoute', (route) => {
      const methods = Array.isArray(route.method) ? route.method : [route.method];
      const rule = ruleFor(methods[0]!, route.url, this.table);
      const access = rule ? `Role: ${rule.role}${rule.trustDomain.from === 'installation' ? ', scoped to every trust domain' : ''}.` : 'No rule in the access table: denied to every caller.';
      route.schema = { ...route.schema, description: route.schema?.description ? `${route.schema.description}\n\n${access}` : access };
    });
    app.addHook('onRequest', async (req) => this.authenticate(req));
    app.addHook('preHandler', async (req) => this.authorize(req));
    // registered after authorize: the handler, and only the handler, runs in the request's transaction
    app.addHook('preHandler', (req, _reply, done) => this.beginChange(req, done));
    app.addHook('onSend', async (req, reply, payload) => this.commitChange(req, reply, payload));
    app.addHook('preSerialization', async (req, _reply, payload) => this.checkList(req, payload));
    app.addHook('onError', async (req, _reply, err) => {
      const state = stateOf(req);
      if (state) state.errorCode = toHttpError(err).body.code;
    });
    app.addHook('onResponse', async (req, reply) => this.record(req, reply));
  }

  /** preHandler: a write runs in a transaction that its record will join (unless its rule says otherwise). */
  beginChange(req: FastifyRequest, done: () => void): void {
    const state = stateOf(req);
    if (!this.deps.transactions || !state?.principal || !state.rule || state.rule.ownTransactions || READS.has(req.method)) {
      done();
      return;
    }
    state.transaction = this.deps.transactions.begin(done);
  }

  /**
   * onSend (the status is final, nothing is sent yet): the record joins the change's transaction
   * and both commit, or neither does and the caller is told 503 instead of the handler's answer.
   */
  async commitChange(req: FastifyRequest, reply: FastifyReply, payload: unknown): Promise<unknown> {
    const state = stateOf(req);
    const tx = state?.transaction;
    if (!state || !tx) return payload;
    state.transaction = undefined;
    const records = this.recordsOf(req, reply.statusCode);
    const record = records[0];
    try {
      await tx.finish(async (q) => {
        if (records.length === 1) await this.deps.sink.append(records[0]!, q);
        else if (records.length > 1) await this.deps.sink.appendAll(records, q);
      });
      state.recorded = true;
      return payload;
    } catch (err) {
      state.recorded = true;
      const unavailable = isCairnError(err, 'store_unavailable');
      if (unavailable) req.log.warn({ code: err.code, action: record?.action }, 'a change was rolled back: the database is unavailable');
      else req.log.error({ err, action: record?.action }, 'a change was rolled back: its audit entry could not be written');
      const { status, body } = toHttpError(unavailable ? err : new CairnError('store_unavailable', 'the change could not be recorded in the audit log, so it was not made; retry later'));
      state.errorCode = body.code;
      void reply.code(status).header('content-type', 'application/json; charset=utf-8');
      return JSON.stringify(body);
    }
  }

  /** onRequest: who is calling, and may their role call this route at all. */
  async authenticate(req: FastifyRequest): Promise<void> {
    const state: AdminRequestState = { credential: 'none' };
    req.adminState = state;
    let result: BearerResult | SvidResult;
    const chain = req.headers.authorization === undefined ? peerChain(req) : [];
    if (req.headers.authorization !== undefined) {
      state.credential = 'token';
      result = await this.deps.tokens.verifyBearer(req.headers.authorization);
    } else if (chain.length > 0) {
      state.credential = 'svid';
      result = await this.deps.svids.verify(chain);
    } else {
      result = { ok: false, error: new CairnError('unauthenticated', 'an admin credential is required: Authorization: Bearer <admin token>, or on the TLS listener a client certificate that is an admin SVID') };
    }
    if (!result.ok) {
      state.failed = true;
      state.attempted = 'credential' in result ? result.credential : 'claimed' in result ? result.claimed : undefined;
      throw result.error;
    }
    const principal = result.principal;
    state.principal = principal;
    req.actor = principal.name;
    const rule = ruleFor(req.routeOptions.method as string, req.routeOptions.url, this.table);
    state.rule = rule;
    if (!rule) throw denied(principal, `cannot call ${req.method} ${req.routeOptions.url ?? req.url}: the route has no row in the access table, so it is denied to everyone`);
    if (!roleAtLeast(principal.role, rule.role)) throw denied(principal, `cannot call ${req.method} ${req.routeOptions.url}: it needs the ${rule.role} role`, { requiredRole: rule.role });
    if (rule.trustDomain.from === 'installation' && principal.trustDomains !== null) {
      throw denied(principal, `cannot call ${req.method} ${req.routeOptions.url}: admin credentials are managed only by credentials scoped to every trust domain`);
    }
  }

  /** preHandler (the body is parsed and validated): the trust domain the request acts on must be in scope; then the guards. */
  async authorize(req: FastifyRequest): Promise<void> {
    const state = stateOf(req);
    const principal = state?.principal;
    const rule = state?.rule;
    if (!state || !principal || !rule) throw new CairnError('unauthenticated', 'an admin credential is required');
    const params = (req.params ?? {}) as Record<string, unknown>;
    const body = (req.body !== null && typeof req.body === 'object' ? req.body : undefined) as Record<string, unknown> | undefined;
    const query = (req.query ?? {}) as Record<string, unknown>;
    const scoped = principal.trustDomains !== null;
    const demand = (trustDomain: string | undefined, what: string): void => {
      if (trustDomain !== undefined) state.trustDomain ??= trustDomain;
      if (!scoped) return;
      if (trustDomain === undefined) throw denied(principal, `cannot call ${req.method} ${req.routeOptions.url}: the request names no trust domain (${what}), and the credential is scoped`);
      if (!inScope(principal, trustDomain)) throw denied(principal, `cannot act on trust domain ${trustDomain} (${what})`, { trustDomain });
    };
    const text = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
    const tdOfId = (v: unknown): string | undefined => (typeof v === 'string' ? SpiffeId.parse(v).trustDomain : undefined);
    let entry: Awaited<ReturnType<AdminEntryFacts['entry']>>;
    let template: Awaited<ReturnType<AdminEntryFacts['template']>>;
    const td = rule.trustDomain;
    switch (td.from) {
      case 'param':
        state.subject = text(params[td.name]);
        demand(state.subject, `path parameter ${td.name}`);
        break;
      case 'body': {
        const found: [string, string][] = [
          ...td.ids.filter((f) => body?.[f] !== undefined).map((f): [string, string] => [f, (scoped ? tdOfId(body?.[f]) : safeTrustDomainOf(body?.[f])) ?? '']),
          ...td.names.filter((f) => body?.[f] !== undefined).map((f): [string, string] => [f, text(body?.[f]) ?? '']),
        ];
        state.subject = text(body?.[found[0]?.[0] ?? '']);
        const fields = [...td.ids, ...td.names].join(' or ');
        if (found.length === 0) demand(undefined, `body field ${fields}`);
        // unscoped credentials leave a malformed value to the route's own validation
        for (const [field, trustDomain] of found) demand(trustDomain === '' ? undefined : trustDomain, `body field ${field}`);
        break;
      }
      case 'entry': {
        state.subject = text(params[td.param]);
        entry = state.subject === undefined ? undefined : await this.deps.facts.entry(state.subject);
        // a missing entry is the route's 404; there is nothing of another trust domain to protect
        if (entry) demand(entry.trustDomain, 'the entry');
        if (body?.spiffeId !== undefined) demand(scoped ? tdOfId(body.spiffeId) : safeTrustDomainOf(body.spiffeId), 'body field spiffeId');
        break;
      }
      case 'items': {
        // each item as its own request would be: in scope, then (below) past the guard
        const list = Array.isArray(body?.[td.items]) ? (body[td.items] as unknown[]) : [];
        list.forEach((item, i) => {
          const fields = item !== null && typeof item === 'object' ? (item as Record<string, unknown>) : {};
          const field = td.ids.find((f) => fields[f] !== undefined);
          if (field === undefined) {
            // an item naming no trust domain fails its own validation; a scoped credential cannot vouch for it
            if (scoped) demand(undefined, `${td.items}[${i}]`);
            return;
          }
          demand(scoped ? tdOfId(fields[field]) : safeTrustDomainOf(fields[field]), `${td.items}[${i}].${field}`);
        });
        break;
      }
      case 'template': {
        state.subject = text(params[td.param]);
        template = state.subject === undefined ? undefined : await this.deps.facts.template(state.subject);
        // a missing template is the route's 404
        if (template) demand(template.trustDomain, 'the template');
        break;
      }
      case 'list': {
        const requested = td.query === undefined ? undefined : text(query[td.query]);
        if (requested !== undefined) demand(requested, `query parameter ${td.query}`);
        state.listScope = scoped ? (requested !== undefined ? [requested] : principal.trustDomains!) : undefined;
        break;
      }
      case 'none':
      case 'installation':
        state.subject = text(params.name) ?? text(body?.name);
        break;
    }
    if (rule.guard && !roleAtLeast(principal.role, 'admin')) {
      if (td.from === 'items') await this.guardItems(rule.guard, td.items, body, principal.name);
      else await checkGuard(rule.guard, { body, entry, template, principal: principal.name }, this.deps.facts);
    }
  }

  /** The guard on each item of a batch; the first refusal refuses the request, naming the item. */
  private async guardItems(guard: Guard, field: string, body: Record<string, unknown> | undefined, principal: string): Promise<void> {
    const list = Array.isArray(body?.[field]) ? (body[field] as unknown[]) : [];
    // one read of a trust domain's admin parents for the whole batch, not one per item
    const parents = new Map<string, Promise<string[]>>();
    const facts: AdminEntryFacts = {
      ...this.deps.facts,
      adminParents: (trustDomain) => {
        let p = parents.get(trustDomain);
        if (!p) parents.set(trustDomain, (p = this.deps.facts.adminParents(trustDomain)));
        return p;
      },
    };
    for (const [i, item] of list.entries()) {
      const fields = item !== null && typeof item === 'object' ? (item as Record<string, unknown>) : undefined;
      try {
        await checkGuard(guard, { body: fields, entry: undefined, principal }, facts);
      } catch (err) {
        if (!isCairnError(err, 'permission_denied')) throw err;
        throw new CairnError('permission_denied', `${field}[${i}]: ${err.message}`, { cause: err, details: { ...err.details, item: i } });
      }
    }
  }

  /** preSerialization: a list answer for a scoped credential holds nothing outside its scope, or it fails. */
  async checkList(req: FastifyRequest, payload: unknown): Promise<unknown> {
    const state = stateOf(req);
    const td = state?.rule?.trustDomain;
    const allowed = state?.listScope;
    if (!td || td.from !== 'list' || allowed === undefined || payload === null || typeof payload !== 'object') return payload;
    const items = (payload as Record<string, unknown>)[td.items];
    if (!Array.isArray(items)) return payload;
    for (const item of items as Record<string, unknown>[]) {
      if (!allowed.includes(String(item[td.field]))) {
        req.log.error({ event: 'admin.scope_leak', route: req.routeOptions.url, actor: req.actor }, 'a list answer held an item outside the credential\'s scope; refused');
        throw new CairnError('internal', 'internal error');
      }
    }
    return payload;
  }

  /** onResponse: one record per change, refusal and failed authentication (reads that succeed are not recorded). */
  async record(req: FastifyRequest, reply: FastifyReply): Promise<void> {
    const state = stateOf(req);
    if (!state) return; // refused before authentication (the plain listener's gate), which logs on its own
    // a request that ended without its answer being sent (the client went away mid-handler): nothing of it is kept
    if (state.transaction) await state.transaction.abandon();
    if (state.recorded) return;
    const records = this.recordsOf(req, reply.statusCode);
    if (records.length === 0) return;
    try {
      if (records.length === 1) await this.deps.sink.append(records[0]!);
      else await this.deps.sink.appendAll(records);
    } catch (err) {
      // the database away is a known condition (the request itself got its 503): a warning, not an error with a stack
      if (isCairnError(err, 'store_unavailable')) req.log.warn({ code: err.code, cause: err.cause instanceof Error ? err.cause.message : undefined }, 'could not record an admin request: the database is unavailable');
      else req.log.error({ err }, 'could not record an admin request');
    }
  }

  /**
   * A batch that went through is recorded item by item (the route's itemAction, each with the status
   * and code it would have had alone), so its entries read as the single requests' do; anything else
   * as one request.
   */
  private recordsOf(req: FastifyRequest, status: number): AdminRecord[] {
    const record = this.recordOf(req, status);
    const items = stateOf(req)?.items;
    const action = stateOf(req)?.rule?.itemAction;
    if (!record || status >= 400 || !items || action === undefined) return record ? [record] : [];
    return items.map(({ note, status: itemStatus, code }) => {
      const ok = itemStatus < 400;
      const { old: _old, new: _new, code: _code, ...base } = record;
      return {
        ...base,
        action,
        status: itemStatus,
        target: note.target,
        trustDomain: note.trustDomain,
        ...(code ? { code } : {}),
        ...(ok && note.old !== undefined ? { old: note.old } : {}),
        ...(ok && note.new !== undefined ? { new: note.new } : {}),
        outcome: ok ? 'success' : 'failure',
      };
    });
  }

  /** The request as recorded: a failed authentication, a change, or a refusal; none for a read that succeeded. */
  private recordOf(req: FastifyRequest, status: number): AdminRecord | undefined {
    const state = stateOf(req);
    if (!state) return undefined;
    const base = { time: this.deps.clock.now().toISOString(), status, source: req.ip, ...(state.errorCode ? { code: state.errorCode } : {}) };
    if (state.failed || !state.principal) {
      return { ...base, actor: state.attempted ?? 'anonymous', credential: state.credential, action: 'admin.authenticate', outcome: 'failure' };
    }
    if (READS.has(req.method) && state.errorCode !== 'permission_denied') return undefined;
    const note = state.note ?? {};
    return {
      ...base,
      actor: state.principal.name,
      credential: state.principal.kind,
      action: state.rule?.action ?? `${req.method} ${req.routeOptions.url ?? req.url.split('?')[0]}`,
      target: note.target ?? state.subject,
      trustDomain: note.trustDomain ?? state.trustDomain,
      ...(status < 400 && note.old !== undefined ? { old: note.old } : {}),
      ...(status < 400 && note.new !== undefined ? { new: note.new } : {}),
      outcome: status < 400 ? 'success' : 'failure',
    };
  }
}

/** The trust domain of a SPIFFE ID, or undefined when it is not one (its route rejects it). */
export function safeTrustDomainOf(v: unknown): string | undefined {
  if (typeof v !== 'string') return undefined;
  try {
    return SpiffeId.parse(v).trustDomain;
  } catch {
    return undefined;
  }
}
