-- Node attestation hardened (security review): attestor configurations no longer name files on the
-- CA host, bans outlive node records, and x509pop challenges keep only what checking the answer needs.

-- ---- bans: a deny-list by SPIFFE ID, x509pop device-certificate fingerprint (SHA-1, as in the agent
-- ID) or Kubernetes node UID. It is not tied to a node record: evicting a node keeps its ban, and an
-- ID that never attested can be banned before it first tries.
CREATE TABLE node_bans (
  trust_domain text NOT NULL REFERENCES trust_domains (name) ON DELETE CASCADE,
  kind         text NOT NULL CHECK (kind IN ('spiffe_id', 'x509pop_fingerprint', 'k8s_psat_node_uid')),
  value        text NOT NULL,
  subject      text GENERATED ALWAYS AS (kind || ':' || value) STORED,
  reason       text,
  created_by   text NOT NULL,
  created_at   timestamptz NOT NULL,
  PRIMARY KEY (trust_domain, kind, value)
);
CREATE INDEX node_bans_by_subject ON node_bans (trust_domain, subject);

-- What else (beyond its SPIFFE ID) a node can be banned by: 'x509pop_fingerprint:<sha1>' or
-- 'k8s_psat_node_uid:<uid>'. Written at each attestation; derived here from the IDs of nodes
-- attested before, whose last path segment is exactly that fingerprint or node UID.
ALTER TABLE attested_nodes ADD COLUMN ban_subjects text[] NOT NULL DEFAULT '{}';
UPDATE attested_nodes SET ban_subjects = ARRAY['x509pop_fingerprint:' || substring(spiffe_id from '[^/]+$')]
  WHERE attestation_type = 'x509pop';
UPDATE attested_nodes SET ban_subjects = ARRAY['k8s_psat_node_uid:' || substring(spiffe_id from '[^/]+$')]
  WHERE attestation_type = 'k8s_psat';

-- Bans recorded on node records carry over. The column stays (no longer read) for replicas of the
-- previous version still running during a rolling upgrade.
INSERT INTO node_bans (trust_domain, kind, value, reason, created_by, created_at)
  SELECT trust_domain, 'spiffe_id', spiffe_id, 'banned before bans outlived node records', 'migration', updated_at
  FROM attested_nodes WHERE banned
  ON CONFLICT DO NOTHING;

-- ---- x509pop challenges: the device's public key, fingerprint and derived identity instead of the
-- presented chain (up to ~240 KB of it was stored per request). Outstanding challenges live 60 s:
-- dropping them costs a device one retry, and dropping the table gives its space back at once.
DROP TABLE attestation_challenges;
CREATE TABLE x509pop_challenges (
  id           text PRIMARY KEY,
  trust_domain text NOT NULL REFERENCES trust_domains (name) ON DELETE CASCADE,
  attestor     text NOT NULL,
  -- SHA-1 of the device certificate (hex) and its SubjectPublicKeyInfo (DER): the answer's
  -- signature is checked with this key
  fingerprint  text NOT NULL,
  public_key   bytea NOT NULL,
  -- SHA-1 of the manufacturer CA the chain verified to, and the earliest notAfter on the way
  anchor       text NOT NULL,
  valid_until  timestamptz NOT NULL,
  selectors    text[] NOT NULL,
  nonce        bytea NOT NULL,
  expires_at   timestamptz NOT NULL
);
CREATE INDEX x509pop_challenges_by_certificate ON x509pop_challenges (trust_domain, fingerprint, expires_at);
CREATE INDEX x509pop_challenges_by_expiry ON x509pop_challenges (expires_at);

-- ---- k8s_psat: configurations that named files on the CA host. Clusters that used the in-cluster
-- defaults now name the CA's built-in credential set "in-cluster" (the same files, chosen by the CA).
UPDATE node_attestors
  SET config = (config - 'apiCaFile' - 'apiTokenFile') || '{"kubeCredentials": "in-cluster"}'::jsonb
  WHERE kind = 'k8s_psat' AND config->>'mode' = 'token_review' AND NOT (config ? 'apiServer')
    AND coalesce(config->>'apiTokenFile', '/var/run/secrets/kubernetes.io/serviceaccount/token') = '/var/run/secrets/kubernetes.io/serviceaccount/token'
    AND coalesce(config->>'apiCaFile', '/var/run/secrets/kubernetes.io/serviceaccount/ca.crt') = '/var/run/secrets/kubernetes.io/serviceaccount/ca.crt';

-- Any other host path (a token or CA file, or the in-cluster token sent to another API server) is
-- never read again: the cluster is disabled, with what it named kept under "legacy" for the admin to
-- see, until it is configured again with inline credentials or a credential set of the CA's own. The
-- API server moves there too, so a replica of the previous version still running during a rolling
-- upgrade falls back to the in-cluster API server instead of sending anything to that one.
UPDATE node_attestors
  SET config = (config - 'apiCaFile' - 'apiTokenFile' - 'jwksCaFile' - 'apiServer') || jsonb_build_object(
        'disabled', 'this cluster named files on the CA host, which attestor configuration no longer may: configure it again with inline credentials or a credential set the CA was started with (--kube-credentials)',
        'legacy', jsonb_strip_nulls(jsonb_build_object('apiServer', config->'apiServer', 'apiTokenFile', config->'apiTokenFile', 'apiCaFile', config->'apiCaFile', 'jwksCaFile', config->'jwksCaFile'))),
      updated_at = now()
  WHERE kind = 'k8s_psat'
    AND (config ? 'apiTokenFile' OR config ? 'apiCaFile' OR config ? 'jwksCaFile'
         OR (config->>'mode' = 'token_review' AND NOT (config ? 'kubeCredentials')));
