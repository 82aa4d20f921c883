/**
 * Route paths, apart from their schemas: the node agent imports only these, so it does not load
 * TypeBox (~20 MB resident, for schemas only the CA validates with).
 */

/** Routes on the CA's TLS listener used by node agents and agentless devices. */
export const AgentPaths = {
  attest: '/agent/v1/attest',
  renew: '/agent/v1/renew',
  sync: '/agent/v1/sync',
  x509Svids: '/agent/v1/x509-svids',
  jwtSvids: '/agent/v1/jwt-svids',
  templateX509Svids: '/agent/v1/template-x509-svids',
  templateJwtSvids: '/agent/v1/template-jwt-svids',
  deviceRedeem: '/device/v1/redeem',
  deviceRenew: '/device/v1/renew',
  deviceJwtSvids: '/device/v1/jwt-svids',
} as const;

/** Node attestation with Kubernetes PSATs and x509pop: agent-facing (TLS, no client cert) and admin routes. */
export const NodeAttestationPaths = {
  attestPsat: '/agent/v1/attest/k8s-psat',
  x509PopChallenge: '/agent/v1/attest/x509pop/challenge',
  attestX509Pop: '/agent/v1/attest/x509pop',
  attestors: '/v1/trust-domains/:trustDomain/attestors',
  psatCluster: '/v1/trust-domains/:trustDomain/attestors/k8s-psat/:name',
  x509PopCa: '/v1/trust-domains/:trustDomain/attestors/x509pop/:name',
  attestor: '/v1/trust-domains/:trustDomain/attestors/:kind/:name',
  caTls: '/v1/ca/tls',
} as const;
