-- SPIFFE federation: the bundles of foreign trust domains, per local trust domain.
-- cairn:expand-only

-- One row per (local trust domain, foreign trust domain): the foreign bundle that workloads of the
-- local trust domain whose entries federate with it receive (X509SVIDResponse.federated_bundles,
-- FetchX509Bundles, FetchJWTBundles, ValidateJWTSVID). `document` is the bundle as a SPIFFE bundle
-- (JWKS) JSON document as we re-encoded it after parsing; `sequence` is its spiffe_sequence (NULL when
-- it came without one, e.g. as PEM); `digest` identifies the content for agents' sync.
CREATE TABLE federated_bundles (
  trust_domain          text NOT NULL REFERENCES trust_domains (name) ON DELETE CASCADE,
  foreign_trust_domain  text NOT NULL,
  document              text NOT NULL,
  sequence              bigint,
  refresh_hint_seconds  integer,
  digest                text NOT NULL,
  source                text NOT NULL CHECK (source IN ('static')),
  updated_at            timestamptz NOT NULL,
  updated_by            text NOT NULL,
  PRIMARY KEY (trust_domain, foreign_trust_domain)
);
