-- Workload identity templates: one row serves every caller of a parent whose selectors include the
-- template's, with a SPIFFE ID rendered from the caller's selectors (spiffe://{td}/ns/{k8s:ns}/sa/{k8s:sa}).
-- Revisions come from the entries' sequence: agents sync entries and templates with one cursor.
-- cairn:expand-only

CREATE TABLE identity_templates (
  id                    text PRIMARY KEY,
  trust_domain          text NOT NULL REFERENCES trust_domains (name) ON DELETE CASCADE,
  parent_id             text NOT NULL,
  -- sorted, deduplicated "type:value" strings; none: every caller of the parent
  selectors             text[] NOT NULL DEFAULT '{}',
  spiffe_id_template    text NOT NULL,
  dns_templates         text[] NOT NULL DEFAULT '{}',
  x509_svid_ttl_seconds integer CHECK (x509_svid_ttl_seconds > 0),
  jwt_svid_ttl_seconds  integer CHECK (jwt_svid_ttl_seconds > 0),
  hint                  text,
  admin                 boolean NOT NULL DEFAULT false,
  admin_role            text CHECK (admin_role IN ('admin', 'operator', 'viewer')),
  federates_with        text[] NOT NULL DEFAULT '{}',
  revision              bigint NOT NULL DEFAULT nextval('entry_revisions'),
  created_at            timestamptz NOT NULL,
  updated_at            timestamptz NOT NULL
);
CREATE UNIQUE INDEX identity_templates_identity ON identity_templates (spiffe_id_template, parent_id, selectors);
CREATE INDEX identity_templates_by_parent ON identity_templates (parent_id);
CREATE INDEX identity_templates_by_revision ON identity_templates (revision);
CREATE INDEX identity_templates_admin_parents ON identity_templates (trust_domain, parent_id) WHERE admin;

-- What an agent must drop: a deleted template.
CREATE TABLE identity_template_tombstones (
  id           bigserial PRIMARY KEY,
  template_id  text NOT NULL,
  trust_domain text NOT NULL,
  parent_id    text NOT NULL,
  revision     bigint NOT NULL DEFAULT nextval('entry_revisions'),
  created_at   timestamptz NOT NULL
);
CREATE INDEX identity_template_tombstones_by_revision ON identity_template_tombstones (revision);

-- The template an SVID was issued from (agent issuance by template): an admin template's SVIDs are admin credentials.
ALTER TABLE issued_x509_svids ADD COLUMN template_id text;
