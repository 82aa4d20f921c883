-- Cairn schema, part 1: trust domains, their authority keys, admin tokens, and the SVID inventory.

CREATE TABLE trust_domains (
  name                        text PRIMARY KEY,
  ca_key_type                 text NOT NULL CHECK (ca_key_type IN ('ec-p256', 'ec-p384', 'rsa-2048')),
  ca_ttl_seconds              integer NOT NULL CHECK (ca_ttl_seconds > 0),
  x509_svid_ttl_seconds       integer NOT NULL CHECK (x509_svid_ttl_seconds > 0),
  jwt_svid_ttl_seconds        integer NOT NULL CHECK (jwt_svid_ttl_seconds > 0),
  jwt_issuer                  text,
  -- SPIFFE bundle spiffe_sequence: bumped on every change of the published key set.
  bundle_sequence             bigint NOT NULL DEFAULT 1,
  bundle_refresh_hint_seconds integer NOT NULL DEFAULT 300,
  created_at                  timestamptz NOT NULL,
  updated_at                  timestamptz NOT NULL
);

-- One row per signing key. Private keys are sealed (AES-256-GCM) under a KEK that is never stored here.
CREATE TABLE authority_keys (
  id                 text PRIMARY KEY,
  trust_domain       text NOT NULL REFERENCES trust_domains (name) ON DELETE CASCADE,
  kind               text NOT NULL CHECK (kind IN ('x509', 'jwt')),
  key_type           text NOT NULL,
  status             text NOT NULL CHECK (status IN ('prepared', 'active', 'retired')),
  public_key         bytea NOT NULL,
  certificate        bytea,
  private_key_sealed bytea NOT NULL,
  not_before         timestamptz NOT NULL,
  not_after          timestamptz NOT NULL,
  created_at         timestamptz NOT NULL,
  CHECK ((kind = 'x509') = (certificate IS NOT NULL))
);
CREATE UNIQUE INDEX authority_keys_one_active ON authority_keys (trust_domain, kind) WHERE status = 'active';
CREATE INDEX authority_keys_by_trust_domain ON authority_keys (trust_domain);

CREATE TABLE admin_tokens (
  id         text PRIMARY KEY,
  name       text NOT NULL UNIQUE,
  token_hash bytea NOT NULL UNIQUE,
  created_at timestamptz NOT NULL
);

-- Every X.509-SVID ever issued. No foreign key: the record outlives a deleted trust domain.
CREATE TABLE issued_x509_svids (
  serial       text PRIMARY KEY,
  trust_domain text NOT NULL,
  spiffe_id    text NOT NULL,
  not_before   timestamptz NOT NULL,
  not_after    timestamptz NOT NULL,
  issued_to    text NOT NULL,
  issued_at    timestamptz NOT NULL
);
CREATE INDEX issued_x509_svids_by_id ON issued_x509_svids (spiffe_id text_pattern_ops, serial);
CREATE INDEX issued_x509_svids_by_expiry ON issued_x509_svids (not_after);
