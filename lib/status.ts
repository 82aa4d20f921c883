import type { ErrorCode } from './errors.js';

/** gRPC status codes (grpc/status.proto) that our error codes map onto. */
export const GrpcStatus = {
  InvalidArgument: 3,
  NotFound: 5,
  AlreadyExists: 6,
  PermissionDenied: 7,
  ResourceExhausted: 8,
  FailedPrecondition: 9,
  Unimplemented: 12,
  Internal: 13,
  Unavailable: 14,
  Unauthenticated: 16,
} as const;
export type GrpcStatusCode = (typeof GrpcStatus)[keyof typeof GrpcStatus];

export interface TransportStatus {
  readonly http: number;
  readonly grpc: GrpcStatusCode;
}

const s = (http: number, grpc: GrpcStatusCode): TransportStatus => ({ http, grpc });
const G = GrpcStatus;

/** THE table: every error code's HTTP and gRPC status. A code without a row does not compile. */
export const STATUS_TABLE: Readonly<Record<ErrorCode, TransportStatus>> = {
  invalid_request: s(400, G.InvalidArgument),
  malformed_json: s(400, G.InvalidArgument),
  payload_too_large: s(413, G.InvalidArgument),
  batch_too_large: s(413, G.InvalidArgument),
  unsupported_media_type: s(415, G.InvalidArgument),
  not_found: s(404, G.NotFound),
  invalid_page_token: s(400, G.InvalidArgument),
  unauthenticated: s(401, G.Unauthenticated),
  permission_denied: s(403, G.PermissionDenied),
  rate_limited: s(429, G.ResourceExhausted),
  tls_required: s(403, G.PermissionDenied),
  invalid_spiffe_id: s(400, G.InvalidArgument),
  invalid_trust_domain: s(400, G.InvalidArgument),
  wrong_trust_domain: s(400, G.InvalidArgument),
  reserved_spiffe_id: s(400, G.InvalidArgument),
  invalid_dns_name: s(400, G.InvalidArgument),
  invalid_audience: s(400, G.InvalidArgument),
  invalid_ttl: s(400, G.InvalidArgument),
  invalid_selector: s(400, G.InvalidArgument),
  weak_selectors: s(400, G.InvalidArgument),
  trust_domain_not_found: s(404, G.NotFound),
  trust_domain_exists: s(409, G.AlreadyExists),
  trust_domain_in_use: s(409, G.FailedPrecondition),
  oidc_issuer_not_configured: s(404, G.NotFound),
  authority_expired: s(503, G.Unavailable),
  authority_not_found: s(404, G.NotFound),
  authority_invalid_state: s(409, G.FailedPrecondition),
  authority_in_use: s(409, G.FailedPrecondition),
  authority_too_new: s(409, G.FailedPrecondition),
  invalid_csr: s(400, G.InvalidArgument),
  csr_signature_invalid: s(400, G.InvalidArgument),
  unsupported_key_type: s(400, G.InvalidArgument),
  invalid_token: s(401, G.Unauthenticated),
  agent_banned: s(403, G.PermissionDenied),
  agent_not_found: s(404, G.NotFound),
  agent_svid_superseded: s(401, G.Unauthenticated),
  entry_not_found: s(404, G.NotFound),
  entry_exists: s(409, G.AlreadyExists),
  not_entry_parent: s(403, G.PermissionDenied),
  invalid_id_template: s(400, G.InvalidArgument),
  template_not_found: s(404, G.NotFound),
  template_exists: s(409, G.AlreadyExists),
  template_refused: s(403, G.PermissionDenied),
  attestor_unavailable: s(503, G.Unavailable),
  svid_not_found: s(404, G.NotFound),
  svid_revoked: s(401, G.Unauthenticated),
  admin_not_found: s(404, G.NotFound),
  admin_exists: s(409, G.AlreadyExists),
  conflict: s(409, G.AlreadyExists),
  store_unavailable: s(503, G.Unavailable),
  kek_unavailable: s(503, G.Unavailable),
  kek_not_staged: s(409, G.FailedPrecondition),
  kek_unchanged: s(409, G.FailedPrecondition),
  invalid_audit_range: s(400, G.InvalidArgument),
  invalid_bundle: s(400, G.InvalidArgument),
  bundle_sequence_older: s(409, G.FailedPrecondition),
  federated_bundle_not_found: s(404, G.NotFound),
  federated_bundle_in_use: s(409, G.FailedPrecondition),
  federation_endpoint_not_allowed: s(403, G.PermissionDenied),
  invalid_upstream_ca: s(400, G.InvalidArgument),
  upstream_not_ca: s(400, G.InvalidArgument),
  upstream_key_mismatch: s(400, G.InvalidArgument),
  upstream_expires_too_soon: s(400, G.InvalidArgument),
  web_certificate_file_not_allowed: s(403, G.PermissionDenied),
  web_certificate_invalid: s(400, G.InvalidArgument),
  unknown_federated_trust_domain: s(400, G.InvalidArgument),
  internal: s(500, G.Internal),
};

export function statusOf(code: ErrorCode): TransportStatus {
  return STATUS_TABLE[code];
}
