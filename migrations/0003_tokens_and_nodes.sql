-- One-time attestation tokens, attested nodes (agents and agentless devices), the CA's TLS authority.

CREATE TABLE one_time_tokens (
  id           text PRIMARY KEY,
  trust_domain text NOT NULL REFERENCES trust_domains (name) ON DELETE CASCADE,
  kind         text NOT NULL CHECK (kind IN ('join', 'workload')),
  -- SHA-256 of the secret; the secret itself is never stored
  secret_hash  bytea NOT NULL,
  -- join: the agent ID to issue (alias) or NULL for the default; workload: the bound SPIFFE ID
  spiffe_id    text,
  selectors    text[] NOT NULL DEFAULT '{}',
  expires_at   timestamptz NOT NULL,
  used_at      timestamptz,
  created_by   text NOT NULL,
  created_at   timestamptz NOT NULL,
  CHECK (kind = 'join' OR spiffe_id IS NOT NULL)
);
CREATE INDEX one_time_tokens_by_expiry ON one_time_tokens (expires_at);

CREATE TABLE attested_nodes (
  spiffe_id        text PRIMARY KEY,
  trust_domain     text NOT NULL REFERENCES trust_domains (name) ON DELETE CASCADE,
  kind             text NOT NULL CHECK (kind IN ('agent', 'device')),
  attestation_type text NOT NULL,
  selectors        text[] NOT NULL DEFAULT '{}',
  -- the SVID serial the node holds now, and the one just issued but not yet used
  serial           text NOT NULL,
  new_serial       text,
  expires_at       timestamptz NOT NULL,
  banned           boolean NOT NULL DEFAULT false,
  created_at       timestamptz NOT NULL,
  updated_at       timestamptz NOT NULL
);
CREATE INDEX attested_nodes_by_trust_domain ON attested_nodes (trust_domain, spiffe_id);

-- One per installation, shared by every replica: it signs each replica's TLS server certificate.
-- Bootstrap tokens pin its key.
CREATE TABLE server_tls_authority (
  id                 text PRIMARY KEY CHECK (id = 'default'),
  key_type           text NOT NULL,
  certificate        bytea NOT NULL,
  private_key_sealed bytea NOT NULL,
  not_after          timestamptz NOT NULL,
  created_at         timestamptz NOT NULL
);
