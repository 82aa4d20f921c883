-- Node attestation beyond join tokens: Kubernetes projected service-account tokens (k8s_psat) and
-- proof of possession of a manufacturer-issued device certificate (x509pop).

-- Per trust domain: a Kubernetes cluster (k8s_psat) or a manufacturer CA set (x509pop).
CREATE TABLE node_attestors (
  trust_domain text NOT NULL REFERENCES trust_domains (name) ON DELETE CASCADE,
  kind         text NOT NULL CHECK (kind IN ('k8s_psat', 'x509pop')),
  name         text NOT NULL,
  config       jsonb NOT NULL,
  created_at   timestamptz NOT NULL,
  updated_at   timestamptz NOT NULL,
  PRIMARY KEY (trust_domain, kind, name)
);

-- Attestation credentials already accepted (a PSAT's jti or hash), kept until they expire so none is
-- accepted twice, on any replica.
CREATE TABLE used_attestation_credentials (
  credential_hash bytea PRIMARY KEY,
  expires_at      timestamptz NOT NULL
);
CREATE INDEX used_attestation_credentials_by_expiry ON used_attestation_credentials (expires_at);

-- x509pop challenges: a nonce bound to the presented certificate chain, answered once.
CREATE TABLE attestation_challenges (
  id           text PRIMARY KEY,
  trust_domain text NOT NULL REFERENCES trust_domains (name) ON DELETE CASCADE,
  attestor     text NOT NULL,
  nonce        bytea NOT NULL,
  chain        bytea NOT NULL, -- concatenated DER, leaf first
  expires_at   timestamptz NOT NULL
);
CREATE INDEX attestation_challenges_by_expiry ON attestation_challenges (expires_at);
