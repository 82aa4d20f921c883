/**
 * The one domain error type. Every failure a client can see carries a stable `code` from this
 * catalogue; lib/status.ts maps each code to an HTTP and a gRPC status. Caller mistakes (a bug in
 * our own code) throw TypeError instead.
 */
export const ERROR_CODES = [
  // request shape
  'invalid_request',
  'malformed_json',
  'payload_too_large',
  'batch_too_large',
  'unsupported_media_type',
  'not_found',
  'invalid_page_token',
  // authentication and authorization
  'unauthenticated',
  'permission_denied',
  'rate_limited',
  'tls_required',
  // SPIFFE rules
  'invalid_spiffe_id',
  'invalid_trust_domain',
  'wrong_trust_domain',
  'reserved_spiffe_id',
  'invalid_dns_name',
  'invalid_audience',
  'invalid_ttl',
  'invalid_selector',
  'weak_selectors',
  // trust domains and authority
  'trust_domain_not_found',
  'trust_domain_exists',
  'trust_domain_in_use',
  'oidc_issuer_not_configured',
  'authority_expired',
  'authority_not_found',
  'authority_invalid_state',
  'authority_in_use',
  'authority_too_new',
  // issuance
  'invalid_csr',
  'csr_signature_invalid',
  'unsupported_key_type',
  // tokens, agents, entries
  'invalid_token',
  'agent_banned',
  'agent_not_found',
  'agent_svid_superseded',
  'entry_not_found',
  'entry_exists',
  'not_entry_parent',
  'attestor_unavailable',
  // workload identity templates
  'invalid_id_template',
  'template_not_found',
  'template_exists',
  'template_refused',
  // single SVIDs
  'svid_not_found',
  'svid_revoked',
  // admin credentials
  'admin_not_found',
  'admin_exists',
  // the key-encryption key
  'kek_unavailable',
  'kek_not_staged',
  'kek_unchanged',
  // the audit log
  'invalid_audit_range',
  // federation
  'invalid_bundle',
  'bundle_sequence_older',
  'federated_bundle_not_found',
  'federated_bundle_in_use',
  'unknown_federated_trust_domain',
  'federation_endpoint_not_allowed',
  // upstream authorities
  'invalid_upstream_ca',
  'upstream_not_ca',
  'upstream_key_mismatch',
  'upstream_expires_too_soon',
  'web_certificate_file_not_allowed',
  'web_certificate_invalid',
  // infrastructure
  'conflict',
  'store_unavailable',
  'internal',
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

export class CairnError extends Error {
  override readonly name = 'CairnError';
  readonly code: ErrorCode;
  /** Extra machine-readable details safe to show a client (never secrets). */
  readonly details: Readonly<Record<string, unknown>> | undefined;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown; details?: Record<string, unknown> }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.details = options?.details;
  }
}

export function isCairnError(err: unknown, code?: ErrorCode): err is CairnError {
  return err instanceof CairnError && (code === undefined || err.code === code);
}
