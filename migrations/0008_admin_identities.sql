-- Named admin credentials: a role, an optional scope and expiry, and when each was last used. The
-- new columns have defaults or allow NULL, so replicas still running the previous release keep working.
ALTER TABLE admin_tokens ADD COLUMN role text NOT NULL DEFAULT 'admin' CHECK (role IN ('admin', 'operator', 'viewer'));
-- the trust domains the credential may act on; NULL: every trust domain
ALTER TABLE admin_tokens ADD COLUMN trust_domains text[];
ALTER TABLE admin_tokens ADD COLUMN expires_at timestamptz;
-- written at most about once a minute per credential, not on every request
ALTER TABLE admin_tokens ADD COLUMN last_used_at timestamptz;
ALTER TABLE admin_tokens ADD COLUMN created_by text;

-- Admin by X.509-SVID: an entry marked admin carries the role its SVIDs get (NULL on an admin entry
-- written before this column existed: the default role, admin).
ALTER TABLE registration_entries ADD COLUMN admin_role text CHECK (admin_role IN ('admin', 'operator', 'viewer'));
CREATE INDEX registration_entries_admin_parents ON registration_entries (trust_domain, parent_id) WHERE admin;

-- The entry an SVID was issued for (agent batch issuance; NULL for minted, agent and device SVIDs):
-- only an SVID issued for an admin entry is an admin credential.
ALTER TABLE issued_x509_svids ADD COLUMN entry_id text;
