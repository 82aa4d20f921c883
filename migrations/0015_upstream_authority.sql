-- Upstream authorities: a trust domain's X.509 CA may be an intermediate under an enterprise root.
-- cairn:expand-only

-- Per CA certificate: the certificates above it, DER concatenated, from its issuer up to and
-- including the self-signed root(s). NULL for a self-signed CA. SVIDs carry the CA certificate and
-- the non-root ones after the leaf; the bundle carries the roots instead of the CA certificate.
ALTER TABLE authority_keys ADD COLUMN upstream_chain bytea;

-- An X.509 key prepared for an offline upstream has no certificate until it is imported (it is not
-- published meanwhile, and is never activated without one). Relaxing the check is safe for code that
-- does not know it: such code never writes a key without a certificate.
ALTER TABLE authority_keys DROP CONSTRAINT IF EXISTS authority_keys_check;
ALTER TABLE authority_keys ADD CONSTRAINT authority_keys_certificate_check
  CHECK (CASE WHEN kind = 'x509' THEN certificate IS NOT NULL OR status = 'prepared' ELSE certificate IS NULL END);

-- A trust domain's upstream. mode 'disk': the operator handed over the upstream CA's certificate
-- chain and key (sent as PEM over the admin API, never read from a path by the CA); the key is
-- sealed under the KEK like the CA's own keys, and rotation signs each new intermediate with it.
-- mode 'offline': no upstream key here; successors are prepared as CSRs and their certificates
-- imported (cairn authority prepare --csr-out / import), and the chain is the last one imported.
CREATE TABLE upstream_authorities (
  trust_domain        text PRIMARY KEY REFERENCES trust_domains (name) ON DELETE CASCADE,
  mode                text NOT NULL CHECK (mode IN ('disk', 'offline')),
  certificate_chain   bytea NOT NULL,
  key_type            text,
  private_key_sealed  bytea,
  created_at          timestamptz NOT NULL,
  updated_at          timestamptz NOT NULL,
  CHECK ((mode = 'disk') = (private_key_sealed IS NOT NULL))
);
