-- Revocation of single X.509-SVIDs and the CRLs that publish it.
-- cairn:expand-only

-- A revoked serial stays here until the certificate expires (then it leaves every CRL and the row is
-- pruned). `issued_to` is the agent the SVID was issued to (from the inventory): an agent learns through
-- sync which of the SVIDs it holds are revoked.
CREATE TABLE revoked_x509_svids (
  serial       text PRIMARY KEY,
  trust_domain text NOT NULL REFERENCES trust_domains (name) ON DELETE CASCADE,
  spiffe_id    text NOT NULL,
  issued_to    text NOT NULL,
  not_after    timestamptz NOT NULL,
  reason       text,
  revoked_at   timestamptz NOT NULL,
  revoked_by   text NOT NULL
);
CREATE INDEX revoked_x509_svids_by_trust_domain ON revoked_x509_svids (trust_domain, not_after);
CREATE INDEX revoked_x509_svids_by_holder ON revoked_x509_svids (issued_to, not_after);

-- One signed CRL per published X.509 authority (each CA signs its own: a CRL's issuer must be the CA
-- that issued the certificates it speaks for). `crl_number` grows by one at every re-signing. A CRL
-- whose authority is no longer published is simply not served, and deleted at the next re-signing.
CREATE TABLE x509_crls (
  authority_id text PRIMARY KEY,
  trust_domain text NOT NULL REFERENCES trust_domains (name) ON DELETE CASCADE,
  crl_number   bigint NOT NULL,
  this_update  timestamptz NOT NULL,
  next_update  timestamptz NOT NULL,
  der          bytea NOT NULL
);
CREATE INDEX x509_crls_by_trust_domain ON x509_crls (trust_domain);
