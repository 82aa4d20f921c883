-- A trust domain's SPIFFE federation bundle endpoint (SPIFFE Federation, https_spiffe profile): where
-- every replica listens for it, the SPIFFE ID of the SVID it serves with, and the URL peers use.
-- cairn:expand-only

ALTER TABLE trust_domains ADD COLUMN bundle_endpoint_listen text;
ALTER TABLE trust_domains ADD COLUMN bundle_endpoint_profile text CHECK (bundle_endpoint_profile IN ('https_spiffe', 'https_web'));
ALTER TABLE trust_domains ADD COLUMN bundle_endpoint_spiffe_id text;
ALTER TABLE trust_domains ADD COLUMN bundle_endpoint_url text;
