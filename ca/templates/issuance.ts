import { CairnError } from '../../lib/errors.js';
import { decodeCsrText } from '../issuance/csr.js';
import type { CsrRequest, IssuanceService, IssuedX509Svid, MintedJwtSvid } from '../issuance/service.js';
import { normalizeSelectors } from '../entries/validation.js';
import type { AttestedNode } from '../nodes/store.js';
import type { IdentityTemplate } from './model.js';
import { renderForIssuance } from './service.js';
import type { TemplateStore } from './store.js';

export interface TemplateIssuanceDeps {
  readonly store: TemplateStore;
  readonly issuance: Pick<IssuanceService, 'issueX509Batch' | 'mintJwt'>;
  /** The agent's own ID and its node aliases (EnrollmentService.parentsOf). */
  readonly parentsOf: (node: AttestedNode) => Promise<string[]>;
}

export interface TemplateItemResult {
  readonly templateId: string;
  readonly svid?: IssuedX509Svid;
  readonly error?: { code: string; message: string };
}

/**
 * Issuance by template for agents. The agent is trusted for its callers' workload selectors, as with
 * entries, and for nothing else: it names a template of one of its parents and the selectors it
 * vouches for; the CA checks the template's required selectors are among them and renders the SPIFFE
 * ID and DNS names itself. An agent cannot name an ID, and a template of another agent is refused.
 */
export class TemplateIssuance {
  constructor(private readonly deps: TemplateIssuanceDeps) {}

  private async templatesFor(node: AttestedNode, ids: readonly string[]): Promise<Map<string, IdentityTemplate>> {
    const parents = await this.deps.parentsOf(node);
    const found = new Map<string, IdentityTemplate>();
    for (const id of new Set(ids)) {
      const t = await this.deps.store.forParents(parents, id);
      if (t && t.trustDomain === node.trustDomain) found.set(id, t);
    }
    return found;
  }

  private policyFor(t: IdentityTemplate | undefined, claimed: readonly string[]): ReturnType<typeof renderForIssuance> {
    if (!t) throw new CairnError('not_entry_parent', 'this agent is not authorized for that template (unknown template or another parent)');
    return renderForIssuance(t, normalizeSelectors(claimed, { allowEmpty: true }));
  }

  async issueX509(node: AttestedNode, requests: readonly { templateId: string; selectors: readonly string[]; csr: string }[]): Promise<TemplateItemResult[]> {
    const templates = await this.templatesFor(node, requests.map((r) => r.templateId));
    const results: TemplateItemResult[] = new Array(requests.length);
    const toIssue: CsrRequest[] = [];
    const at: number[] = [];
    requests.forEach((r, index) => {
      try {
        const t = templates.get(r.templateId);
        const { spiffeId, dnsNames } = this.policyFor(t, r.selectors);
        toIssue.push({ der: decodeCsrText(r.csr), policy: { spiffeId, ttlSeconds: t!.x509SvidTtlSeconds ?? undefined, dnsNames }, templateId: t!.id });
        at.push(index);
      } catch (err) {
        if (!(err instanceof CairnError)) throw err;
        results[index] = { templateId: r.templateId, error: { code: err.code, message: err.message } };
      }
    });
    if (toIssue.length > 0) {
      const issued = await this.deps.issuance.issueX509Batch(node.trustDomain, toIssue, node.spiffeId);
      issued.forEach((r, k) => {
        const templateId = requests[at[k]!]!.templateId;
        results[at[k]!] = 'svid' in r ? { templateId, svid: r.svid } : { templateId, error: { code: r.error.code, message: r.error.message } };
      });
    }
    return results;
  }

  async mintJwt(node: AttestedNode, templateId: string, selectors: readonly string[], audience: readonly string[]): Promise<MintedJwtSvid> {
    const t = (await this.templatesFor(node, [templateId])).get(templateId);
    const { spiffeId } = this.policyFor(t, selectors);
    return this.deps.issuance.mintJwt(node.trustDomain, { spiffeId, audience, ttlSeconds: t!.jwtSvidTtlSeconds ?? undefined }, node.spiffeId);
  }
}
