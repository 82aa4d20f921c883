-- Registration entries: which workload (selectors under a parent agent) gets which SPIFFE ID.

CREATE SEQUENCE entry_revisions;

CREATE TABLE registration_entries (
  id                    text PRIMARY KEY,
  trust_domain          text NOT NULL REFERENCES trust_domains (name) ON DELETE CASCADE,
  spiffe_id             text NOT NULL,
  parent_id             text NOT NULL,
  -- sorted, deduplicated "type:value" strings
  selectors             text[] NOT NULL CHECK (cardinality(selectors) > 0),
  x509_svid_ttl_seconds integer CHECK (x509_svid_ttl_seconds > 0),
  jwt_svid_ttl_seconds  integer CHECK (jwt_svid_ttl_seconds > 0),
  dns_names             text[] NOT NULL DEFAULT '{}',
  hint                  text,
  admin                 boolean NOT NULL DEFAULT false,
  federates_with        text[] NOT NULL DEFAULT '{}',
  expires_at            timestamptz,
  -- global, monotonically increasing: agents sync "everything after revision N"
  revision              bigint NOT NULL DEFAULT nextval('entry_revisions'),
  created_at            timestamptz NOT NULL,
  updated_at            timestamptz NOT NULL
);
CREATE UNIQUE INDEX registration_entries_identity ON registration_entries (spiffe_id, parent_id, selectors);
CREATE INDEX registration_entries_by_parent ON registration_entries (parent_id);
CREATE INDEX registration_entries_by_trust_domain ON registration_entries (trust_domain);
CREATE INDEX registration_entries_by_revision ON registration_entries (revision);
CREATE INDEX registration_entries_by_selectors ON registration_entries USING gin (selectors);

-- What an agent must drop: a deleted entry, or an entry that moved away from a parent.
CREATE TABLE entry_tombstones (
  id           bigserial PRIMARY KEY,
  entry_id     text NOT NULL,
  trust_domain text NOT NULL,
  parent_id    text NOT NULL,
  revision     bigint NOT NULL DEFAULT nextval('entry_revisions'),
  created_at   timestamptz NOT NULL
);
CREATE INDEX entry_tombstones_by_revision ON entry_tombstones (revision);
