import { createPublicKey, X509Certificate } from 'node:crypto';
import { CairnError } from '../../lib/errors.js';
import { parseSpiffeBundle, pemToDerList, type Bundle } from '../../spiffe/bundle/bundle.js';
import { SpiffeError } from '../../spiffe/errors.js';

/** A foreign bundle document larger than this is not a bundle anyone publishes (SPIRE's are a few KiB). */
export const MAX_BUNDLE_BYTES = 256 * 1024;
const MAX_AUTHORITIES = 64;

const invalid = (message: string, cause?: unknown): CairnError => new CairnError('invalid_bundle', message, cause === undefined ? undefined : { cause });

/** The trust domains a CA certificate's SPIFFE URI SANs name (a SPIFFE CA names its own trust domain). */
function namedTrustDomains(cert: X509Certificate): string[] {
  return (cert.subjectAltName ?? '')
    .split(/,\s*/)
    .filter((s) => s.startsWith('URI:spiffe://'))
    .map((s) => s.slice('URI:spiffe://'.length).split('/')[0]!.toLowerCase());
}

/**
 * Parses a foreign trust domain's bundle as an operator hands it over (`cairn bundle set`, a
 * relationship's bootstrap bundle): a SPIFFE bundle (JWKS JSON, with spiffe_sequence and
 * spiffe_refresh_hint) or PEM CA certificates, both accepted as the SPIFFE Federation standard asks.
 * Refuses what is detectably not that trust domain's bundle: no authorities at all in a PEM file, a
 * certificate that is not a CA (an SVID handed over by mistake), or a CA certificate whose SPIFFE ID
 * names another trust domain.
 */
export function parseForeignBundle(foreignTrustDomain: string, text: string): Bundle {
  if (Buffer.byteLength(text) > MAX_BUNDLE_BYTES) throw invalid(`the bundle is larger than ${MAX_BUNDLE_BYTES / 1024} KiB`);
  const trimmed = text.trim();
  let bundle: Bundle;
  if (trimmed.startsWith('-----BEGIN')) {
    const ders = pemToDerList(trimmed);
    if (ders.length === 0) throw invalid('the PEM holds no CERTIFICATE block: give the CA certificates of the foreign trust domain, or its SPIFFE bundle (JSON)');
    ders.forEach((der, i) => {
      try {
        new X509Certificate(der);
      } catch (err) {
        throw invalid(`certificate ${i + 1} of the PEM does not parse`, err);
      }
    });
    bundle = { trustDomain: foreignTrustDomain, x509Authorities: ders, jwtAuthorities: [] };
  } else {
    if (!trimmed.startsWith('{')) throw invalid('this is neither a SPIFFE bundle (JSON with a "keys" array) nor PEM CA certificates');
    try {
      bundle = parseSpiffeBundle(foreignTrustDomain, trimmed);
    } catch (err) {
      if (err instanceof SpiffeError) throw invalid(`not a SPIFFE bundle: ${err.message}`, err);
      throw err;
    }
    const doc = JSON.parse(trimmed) as { spiffe_sequence?: unknown; spiffe_refresh_hint?: unknown };
    if (doc.spiffe_sequence !== undefined && !(Number.isSafeInteger(doc.spiffe_sequence) && (doc.spiffe_sequence as number) >= 0)) {
      throw invalid('spiffe_sequence must be a non-negative integer');
    }
    if (doc.spiffe_refresh_hint !== undefined && !(Number.isSafeInteger(doc.spiffe_refresh_hint) && (doc.spiffe_refresh_hint as number) >= 0)) {
      throw invalid('spiffe_refresh_hint must be a non-negative integer (seconds)');
    }
  }
  if (bundle.x509Authorities.length + bundle.jwtAuthorities.length > MAX_AUTHORITIES) throw invalid(`the bundle holds more than ${MAX_AUTHORITIES} authorities`);
  bundle.x509Authorities.forEach((der, i) => {
    const cert = new X509Certificate(der);
    if (!cert.ca) throw invalid(`X.509 authority ${i + 1} (${cert.subject.replace(/\n/g, ', ')}) is not a CA certificate: a bundle holds the trust domain's CAs, not an SVID`);
    const named = namedTrustDomains(cert).filter((td) => td !== foreignTrustDomain);
    if (named.length > 0) {
      throw new CairnError('wrong_trust_domain', `X.509 authority ${i + 1} is the CA of spiffe://${named[0]}, not of spiffe://${foreignTrustDomain}: is this another trust domain's bundle?`);
    }
  });
  bundle.jwtAuthorities.forEach((a) => {
    try {
      createPublicKey({ key: { ...a.jwk }, format: 'jwk' });
    } catch (err) {
      throw invalid(`jwt-svid key ${a.kid} is not a usable public key`, err);
    }
  });
  const kids = bundle.jwtAuthorities.map((a) => a.kid);
  if (new Set(kids).size !== kids.length) throw invalid('two jwt-svid keys of the bundle have the same kid');
  return bundle;
}
