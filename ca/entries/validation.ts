import { CairnError } from '../../lib/errors.js';
import { SpiffeError } from '../../spiffe/errors.js';
import { SpiffeId, parseTrustDomain } from '../../spiffe/id.js';

export const MAX_SELECTORS = 32;
const SELECTOR = /^([a-z0-9_-]{1,64}):(.{1,1024})$/s;

/** Selectors are "type:value"; the value may itself contain colons. Sorted and deduplicated. */
export function normalizeSelectors(selectors: readonly string[], { allowEmpty = false } = {}): string[] {
  if (!allowEmpty && selectors.length === 0) throw new CairnError('invalid_selector', 'at least one selector is required');
  if (selectors.length > MAX_SELECTORS) throw new CairnError('invalid_selector', `at most ${MAX_SELECTORS} selectors are allowed`);
  for (const s of selectors) {
    if (typeof s !== 'string' || !SELECTOR.test(s) || /[\u0000-\u001f]/.test(s)) {
      throw new CairnError('invalid_selector', `selector ${JSON.stringify(s)} must be "type:value" with a lowercase type`);
    }
  }
  return [...new Set(selectors)].sort();
}

export function parseId(text: string, field: string): SpiffeId {
  try {
    return SpiffeId.parse(text);
  } catch (err) {
    if (err instanceof SpiffeError) throw new CairnError('invalid_spiffe_id', `${field}: ${err.message}`, { cause: err });
    throw err;
  }
}

export function parseTrustDomains(names: readonly string[], own: string): string[] {
  const out = names.map((n) => {
    try {
      return parseTrustDomain(n);
    } catch (err) {
      throw new CairnError('invalid_trust_domain', `federatesWith: ${(err as Error).message}`, { cause: err });
    }
  });
  if (out.includes(own)) throw new CairnError('invalid_trust_domain', 'federatesWith cannot name the entry\'s own trust domain');
  return [...new Set(out)].sort();
}
