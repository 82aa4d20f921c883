import { CairnError } from '../../lib/errors.js';
import { SpiffeId } from '../../spiffe/id.js';
import { normalizeSelectors } from '../entries/validation.js';
import type { Guard } from './route-table.js';

/** What the guards read about entries and agents, at request time. */
export interface AdminEntryFacts {
  entry(id: string): Promise<{ readonly trustDomain: string; readonly spiffeId: string; readonly admin: boolean } | undefined>;
  template(id: string): Promise<{ readonly trustDomain: string; readonly spiffeIdTemplate: string; readonly admin: boolean } | undefined>;
  /** The parents (agent IDs, node aliases) of a trust domain's admin entries and admin templates. */
  adminParents(trustDomain: string): Promise<string[]>;
  /** The node aliases an agent with these selectors belongs to. */
  aliasesFor(trustDomain: string, selectors: readonly string[]): Promise<string[]>;
  /** The attested nodes a ban subject (`spiffe_id:<id>`, `x509pop_fingerprint:<sha1>`, `k8s_psat_node_uid:<uid>`) names. */
  nodesBannedBy(trustDomain: string, subject: string): Promise<{ readonly spiffeId: string; readonly selectors: readonly string[] }[]>;
}

export interface GuardInput {
  readonly body: Record<string, unknown> | undefined;
  /** The stored entry a route acts on (entry routes). */
  readonly entry: { readonly trustDomain: string; readonly spiffeId: string; readonly admin: boolean } | undefined;
  /** The stored template a route acts on (template routes). */
  readonly template?: { readonly spiffeIdTemplate: string; readonly admin: boolean } | undefined;
  readonly principal: string;
}

const needsAdmin = (principal: string, why: string): CairnError =>
  new CairnError('permission_denied', `${principal} cannot do this: ${why}; only the admin role may`, { details: { requiredRole: 'admin' } });

const canonical = (text: unknown): string | undefined => {
  if (typeof text !== 'string') return undefined;
  try {
    return SpiffeId.parse(text).toString();
  } catch {
    return undefined; // the route's own validation answers for it
  }
};

/**
 * The checks behind route-table Guards, for principals below the admin role. Whoever can write an
 * admin entry, or decide which agent serves one, can obtain its admin SVIDs: those writes are the
 * admin role's, or an operator could make themselves an admin.
 */
export async function checkGuard(guard: Guard, input: GuardInput, facts: AdminEntryFacts): Promise<void> {
  const { body, entry, principal } = input;
  switch (guard) {
    case 'entryWrite': {
      if (body?.admin === true || (body?.adminRole !== undefined && body?.adminRole !== null)) throw needsAdmin(principal, 'it makes an entry an admin entry');
      if (entry?.admin) throw needsAdmin(principal, `entry ${entry.spiffeId} is an admin entry`);
      const ids = [entry?.spiffeId, canonical(body?.spiffeId)].filter((x): x is string => x !== undefined);
      const trustDomain = entry?.trustDomain ?? (ids[0] === undefined ? undefined : SpiffeId.parse(ids[0]).trustDomain);
      if (trustDomain === undefined) return;
      const parents = await facts.adminParents(trustDomain);
      const parent = ids.find((id) => parents.includes(id));
      if (parent) throw needsAdmin(principal, `${parent} is the parent of an admin entry (a node alias that serves it)`);
      return;
    }
    case 'templateWrite': {
      if (body?.admin === true || (body?.adminRole !== undefined && body?.adminRole !== null)) throw needsAdmin(principal, 'it makes a template an admin template');
      if (input.template?.admin) throw needsAdmin(principal, `template ${input.template.spiffeIdTemplate} is an admin template`);
      return;
    }
    case 'tokenCreate': {
      const trustDomain = typeof body?.trustDomain === 'string' ? body.trustDomain : undefined;
      if (trustDomain === undefined) return;
      const parents = await facts.adminParents(trustDomain);
      if (parents.length === 0) return;
      const agentId = canonical(body?.agentId);
      if (agentId && parents.includes(agentId)) throw needsAdmin(principal, `agent ${agentId} serves an admin entry`);
      const selectors = Array.isArray(body?.selectors) ? (body.selectors as string[]) : [];
      if (selectors.length > 0) {
        const alias = (await facts.aliasesFor(trustDomain, normalizeSelectors(selectors, { allowEmpty: true }))).find((a) => parents.includes(a));
        if (alias) throw needsAdmin(principal, `an agent with these selectors joins node alias ${alias}, which serves an admin entry`);
      }
      return;
    }
    case 'agentUnban': {
      // what the ban names: a SPIFFE ID, an x509pop device or a Kubernetes node; and the agents that would be let back
      const agentId = canonical(body?.spiffeId);
      const trustDomain = agentId ? SpiffeId.parse(agentId).trustDomain : typeof body?.trustDomain === 'string' ? body.trustDomain : undefined;
      if (trustDomain === undefined) return;
      const parents = await facts.adminParents(trustDomain);
      if (parents.length === 0) return;
      const fingerprint = typeof body?.fingerprint === 'string' ? body.fingerprint.replace(/:/g, '').toLowerCase() : undefined;
      const nodeUid = typeof body?.nodeUid === 'string' ? body.nodeUid : undefined;
      const subject = agentId ? `spiffe_id:${agentId}` : fingerprint ? `x509pop_fingerprint:${fingerprint}` : nodeUid ? `k8s_psat_node_uid:${nodeUid}` : undefined;
      if (subject === undefined) return;
      const named = agentId
        ? [agentId]
        : fingerprint
          ? [`spiffe://${trustDomain}/cairn/agent/x509pop/${fingerprint}`]
          : parents.filter((p) => p.startsWith(`spiffe://${trustDomain}/cairn/agent/k8s_psat/`) && p.endsWith(`/${nodeUid}`));
      const serving = named.find((id) => parents.includes(id));
      if (serving) throw needsAdmin(principal, `agent ${serving} serves an admin entry`);
      for (const node of await facts.nodesBannedBy(trustDomain, subject)) {
        if (parents.includes(node.spiffeId)) throw needsAdmin(principal, `agent ${node.spiffeId} serves an admin entry`);
        const alias = node.selectors.length ? (await facts.aliasesFor(trustDomain, node.selectors)).find((a) => parents.includes(a)) : undefined;
        if (alias) throw needsAdmin(principal, `agent ${node.spiffeId} belongs to node alias ${alias}, which serves an admin entry`);
      }
      return;
    }
  }
}
