import { X509Certificate } from 'node:crypto';
import type { Clock } from '../../lib/clock.js';
import { CairnError } from '../../lib/errors.js';
import type { SpiffeId } from '../../spiffe/id.js';
import { parseX509Svid } from '../../spiffe/svid/x509.js';
import { verifyClientSvid } from '../authority/client-svid.js';
import type { AdminPrincipal, Role } from './model.js';

/** What SVID authentication reads, each at request time (nothing is cached, so a change counts at once). */
export interface SvidAdminFacts {
  /** The published X.509 authorities of a trust domain hosted here; none for any other. */
  x509Authorities(trustDomain: string): Promise<Buffer[]>;
  /** The inventory row of an issued X.509-SVID. */
  issued(serial: string): Promise<{ readonly spiffeId: string; readonly entryId?: string | null; readonly templateId?: string | null; readonly issuedTo: string } | undefined>;
  entry(id: string): Promise<{ readonly spiffeId: string; readonly admin: boolean; readonly adminRole: Role | null; readonly expiresAt: Date | null } | undefined>;
  /** The workload identity template an SVID was issued from (its ID was rendered and checked at issuance). */
  template(id: string): Promise<{ readonly admin: boolean; readonly adminRole: Role | null } | undefined>;
  /** The attested node (agent) an SVID was issued to. */
  node(spiffeId: string): Promise<{ readonly banned: boolean } | undefined>;
  /** Whether the serial has been revoked (cairn svid revoke). */
  revoked(serial: string): Promise<boolean>;
}

export type SvidResult =
  | { readonly ok: true; readonly principal: AdminPrincipal }
  | { readonly ok: false; readonly error: CairnError; readonly claimed?: string };

/**
 * Admin by X.509-SVID (SPIRE's model): the client certificate on the TLS listener must be an SVID
 * that verifies against the bundle of its own trust domain, hosted here, valid now, and issued
 * through an agent for a registration entry (or workload identity template) that has `admin` set now, has that SPIFFE ID and has not
 * expired; the agent it was issued to must still be attested and not banned. Minted, device and agent
 * SVIDs are never admin credentials, nor is an SVID of another entry with the same SPIFFE ID. The
 * principal is the SPIFFE ID, with the entry's role, scoped to the SVID's trust domain.
 */
export class SvidAdminAuth {
  constructor(private readonly deps: { readonly clock: Clock; readonly facts: SvidAdminFacts }) {}

  async verify(chain: readonly Buffer[]): Promise<SvidResult> {
    let claimed: string | undefined;
    try {
      claimed = parseX509Svid(chain).spiffeId.toString();
    } catch {
      claimed = undefined;
    }
    const refuse = (message: string): SvidResult => ({ ok: false, error: new CairnError('unauthenticated', message), ...(claimed ? { claimed } : {}) });
    let verified: SpiffeId;
    try {
      verified = await verifyClientSvid(chain, (td) => this.deps.facts.x509Authorities(td), this.deps.clock.now());
    } catch (err) {
      if (err instanceof CairnError && err.code === 'unauthenticated') return { ok: false, error: err, ...(claimed ? { claimed } : {}) };
      throw err;
    }
    const id = verified.toString();
    const serial = new X509Certificate(chain[0]!).serialNumber.toLowerCase();
    const issued = await this.deps.facts.issued(serial);
    const notAdmin = `${id} is not an admin SVID: only an SVID issued for a registration entry marked admin authenticates to the admin API`;
    if (!issued || issued.spiffeId !== id || (!issued.entryId && !issued.templateId)) return refuse(notAdmin);
    if (await this.deps.facts.revoked(serial)) return refuse(`${id}: this SVID (serial ${serial}) has been revoked`);
    let role: Role;
    if (issued.entryId) {
      const entry = await this.deps.facts.entry(issued.entryId);
      if (!entry || entry.spiffeId !== id) return refuse(`${id}: the registration entry this SVID was issued for no longer exists`);
      if (!entry.admin || entry.adminRole === null) return refuse(`${id}: the registration entry this SVID was issued for is not marked admin`);
      if (entry.expiresAt && entry.expiresAt <= this.deps.clock.now()) return refuse(`${id}: the registration entry this SVID was issued for has expired`);
      role = entry.adminRole;
    } else {
      // Templates are never edited (only created and deleted): the ID was rendered from this one at issuance.
      const template = await this.deps.facts.template(issued.templateId!);
      if (!template) return refuse(`${id}: the template this SVID was issued from no longer exists`);
      if (!template.admin || template.adminRole === null) return refuse(`${id}: the template this SVID was issued from is not marked admin`);
      role = template.adminRole;
    }
    const node = await this.deps.facts.node(issued.issuedTo);
    if (!node || node.banned) return refuse(`${id}: the agent this SVID was issued to is no longer attested (evicted or banned)`);
    return { ok: true, principal: { name: id, kind: 'svid', role, trustDomains: [verified.trustDomain] } };
  }
}
