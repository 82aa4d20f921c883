-- Authority lifecycle (prepared → active → old → tainted → revoked), per-trust-domain JWT key type and
-- pre-publication window, and the signing authority of each issued X.509-SVID. Every new column allows
-- NULL or has a default, so replicas still running the previous release keep working during an upgrade.

-- 'retired' becomes 'old' (SPIRE's name). The constraint still admits 'retired' because a replica of
-- the previous release may retire a key while others already run this one; the code reads it as 'old'.
ALTER TABLE authority_keys DROP CONSTRAINT IF EXISTS authority_keys_status_check;
UPDATE authority_keys SET status = 'old' WHERE status = 'retired';
ALTER TABLE authority_keys ADD CONSTRAINT authority_keys_status_check CHECK (status IN ('prepared', 'active', 'old', 'tainted', 'retired'));
-- when the key began signing, stopped signing, and was tainted
ALTER TABLE authority_keys ADD COLUMN activated_at timestamptz;
ALTER TABLE authority_keys ADD COLUMN deactivated_at timestamptz;
ALTER TABLE authority_keys ADD COLUMN tainted_at timestamptz;
-- JWT keys: no JWT-SVID this key signed expires after this (rounded up to the minute); X.509 keys use the inventory
ALTER TABLE authority_keys ADD COLUMN signed_until timestamptz;
-- at most one successor waiting per kind, whichever replica prepared it
CREATE UNIQUE INDEX authority_keys_one_prepared ON authority_keys (trust_domain, kind) WHERE status = 'prepared';

-- Revoked keys leave authority_keys altogether: nothing that reads it (this release or the previous
-- one) can publish or sign with them again, and the private key is not kept. The public parts stay
-- for `authority list` until the key would have expired.
CREATE TABLE revoked_authority_keys (
  id             text PRIMARY KEY,
  trust_domain   text NOT NULL REFERENCES trust_domains (name) ON DELETE CASCADE,
  kind           text NOT NULL CHECK (kind IN ('x509', 'jwt')),
  key_type       text NOT NULL,
  public_key     bytea NOT NULL,
  certificate    bytea,
  not_before     timestamptz NOT NULL,
  not_after      timestamptz NOT NULL,
  created_at     timestamptz NOT NULL,
  activated_at   timestamptz,
  deactivated_at timestamptz,
  tainted_at     timestamptz,
  signed_until   timestamptz,
  revoked_at     timestamptz NOT NULL,
  revoked_by     text NOT NULL,
  forced         boolean NOT NULL
);
CREATE INDEX revoked_authority_keys_by_trust_domain ON revoked_authority_keys (trust_domain);

-- NULL: the JWT key type follows ca_key_type (what every trust domain did before), and the default
-- pre-publication window (30 minutes).
ALTER TABLE trust_domains ADD COLUMN jwt_key_type text CHECK (jwt_key_type IN ('ec-p256', 'ec-p384', 'rsa-2048'));
ALTER TABLE trust_domains ADD COLUMN authority_prepublish_seconds integer CHECK (authority_prepublish_seconds >= 0);

-- The authority that signed each X.509-SVID from now on (NULL for SVIDs issued before); the second index
-- finds the newer SVID an agent got for the same entry (the older one is then replaced, no longer in use).
ALTER TABLE issued_x509_svids ADD COLUMN authority_id text;
CREATE INDEX issued_x509_svids_by_authority ON issued_x509_svids (authority_id, not_after) WHERE authority_id IS NOT NULL;
CREATE INDEX issued_x509_svids_by_holder_entry ON issued_x509_svids (issued_to, entry_id, issued_at) WHERE entry_id IS NOT NULL;
