-- The https_web profile of a trust domain's bundle endpoint: the certificate and key files the
-- operator supplies, as an admin named them (relative to, or inside, the CA's --web-cert-dir).
-- cairn:expand-only

ALTER TABLE trust_domains ADD COLUMN bundle_endpoint_cert_file text;
ALTER TABLE trust_domains ADD COLUMN bundle_endpoint_key_file text;
