-- SPIFFE federation: the bundles of foreign trust domains, per local trust domain.
-- cairn:expand-only

-- One row per (local trust domain, foreign trust domain): the foreign bundle that workloads of the
-- local trust domain whose entries federate with it receive (X509SVIDResponse.federated_bundles,
-- FetchX509Bundles, FetchJWTBundles, ValidateJWTSVID). `document` is the bundle as a SPIFFE bundle
-- (JWKS) JSON document as we re-encoded it after parsing; `sequence` is its spiffe_sequence (NULL when
-- it came without one, e.g. as PEM); `digest` identifies the content for agents' sync; `source` is
-- `static` (set by an admin) or `endpoint` (a relationship's bootstrap bundle, then its refreshes).
CREATE TABLE federated_bundles (
  trust_domain          text NOT NULL REFERENCES trust_domains (name) ON DELETE CASCADE,
  foreign_trust_domain  text NOT NULL,
  document              text NOT NULL,
  sequence              bigint,
  refresh_hint_seconds  integer,
  digest                text NOT NULL,
  source                text NOT NULL CHECK (source IN ('static', 'endpoint')),
  updated_at            timestamptz NOT NULL,
  updated_by            text NOT NULL,
  PRIMARY KEY (trust_domain, foreign_trust_domain)
);

-- A federation relationship: where a foreign trust domain publishes its bundle (SPIFFE Federation: URL,
-- profile, and for https_spiffe the endpoint's SPIFFE ID), polled by the CA's refresher. Replicas share
-- the work: a replica claims a due row by moving next_refresh_at ahead (FOR UPDATE SKIP LOCKED), then
-- records the outcome. The bundle itself lives in federated_bundles (source 'endpoint').
CREATE TABLE federation_relationships (
  trust_domain          text NOT NULL REFERENCES trust_domains (name) ON DELETE CASCADE,
  foreign_trust_domain  text NOT NULL,
  bundle_endpoint_url   text NOT NULL,
  profile               text NOT NULL CHECK (profile IN ('https_spiffe', 'https_web')),
  endpoint_spiffe_id    text,
  web_roots             text,
  next_refresh_at       timestamptz NOT NULL,
  failures              integer NOT NULL DEFAULT 0,
  last_attempt_at       timestamptz,
  last_refresh_at       timestamptz,
  last_error            text,
  created_at            timestamptz NOT NULL,
  created_by            text NOT NULL,
  PRIMARY KEY (trust_domain, foreign_trust_domain)
);
CREATE INDEX federation_relationships_due ON federation_relationships (next_refresh_at);
