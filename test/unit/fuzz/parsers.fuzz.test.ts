import { generateKeyPairSync, sign } from 'node:crypto';
import fc from 'fast-check';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { decodeCsrText, verifyCsr } from '../../../ca/issuance/csr.js';
import { CairnError } from '../../../lib/errors.js';
import { generateKeyAndCsr } from '../../../lib/pkcs10.js';
import { encodeSpiffeBundle, parseSpiffeBundle, type Bundle } from '../../../spiffe/bundle/bundle.js';
import { publicJwkOf } from '../../../spiffe/bundle/jwk.js';
import { SpiffeError } from '../../../spiffe/errors.js';
import { SpiffeId } from '../../../spiffe/id.js';
import { validateJwtSvid } from '../../../spiffe/svid/jwt.js';
import { testCaCertificate } from '../../support/certs.js';

/**
 * Property-based fuzzing of the parsers that face untrusted input. Seeded (reproducible in CI) and
 * bounded both in runs and in time. The property is always the same: a clean, typed refusal or a
 * correct answer — never another exception.
 */
const SETTINGS = { seed: 20261123, numRuns: 2000, interruptAfterTimeLimit: 8000 } as const;

let inputsTried = 0;
let properties = 0;

/** fc.assert, counting the inputs each property actually ran (the time limit may cut a run short). */
function check<Ts extends [unknown, ...unknown[]]>(property: fc.IProperty<Ts>, settings: fc.Parameters<Ts>): void {
  const details = fc.check(property, settings);
  if (details.failed) throw new Error(fc.defaultReportMessage(details) ?? 'property failed');
  inputsTried += details.numRuns;
  properties++;
}

afterAll(() => {
  if (process.env.CAIRN_RELIABILITY_DIR) writeFileSync(join(process.env.CAIRN_RELIABILITY_DIR, 'fuzz.json'), JSON.stringify({ properties, inputs: inputsTried }));
});

/** Runs `fn`; fails the property if it throws anything but the expected error type. */
function onlyThrows(type: new (...args: never[]) => Error, fn: () => unknown): boolean {
  try {
    fn();
    return true;
  } catch (err) {
    if (err instanceof type) return true;
    throw err;
  }
}

const label = fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,14}[a-z0-9])?$/);
const trustDomain = fc.array(label, { minLength: 1, maxLength: 4 }).map((l) => l.join('.'));
const segment = fc.stringMatching(/^[A-Za-z0-9._-]{1,12}$/).filter((s) => s !== '.' && s !== '..');
const validId = fc.tuple(trustDomain, fc.array(segment, { maxLength: 6 })).map(([td, segs]) => `spiffe://${td}${segs.map((s) => `/${s}`).join('')}`);

describe('fuzz: the SPIFFE ID parser', () => {
  it('round-trips every valid ID', () => {
    check(fc.property(validId, (id) => SpiffeId.parse(id).toString() === id), SETTINGS);
  });

  it('answers arbitrary text with a SpiffeError or a valid ID, never anything else', () => {
    const noise = fc.oneof(fc.string({ maxLength: 300 }), fc.string({ unit: 'binary', maxLength: 300 }), validId.map((id) => id + '/../x'));
    check(fc.property(noise, (text) => onlyThrows(SpiffeError, () => SpiffeId.parse(text))), SETTINGS);
  });

  it('refuses every single-character corruption the spec forbids', () => {
    const bad = fc.constantFrom('%', '?', '#', ':', '@', ' ', 'A', '\u00e9', '\u0000', '//', '/./', '/../');
    check(
      fc.property(validId, bad, fc.nat(), (id, b, at) => {
        const cut = 'spiffe://'.length + (at % (id.length - 'spiffe://'.length + 1));
        const mutated = id.slice(0, cut) + b + id.slice(cut);
        try {
          const parsed = SpiffeId.parse(mutated);
          // uppercase is only legal in the path; anything else must have been refused
          return b === 'A' && parsed.path.includes('A');
        } catch (err) {
          if (err instanceof SpiffeError) return true;
          throw err;
        }
      }),
      SETTINGS,
    );
  });
});

describe('fuzz: CSR parsing and proof of possession', () => {
  const good = generateKeyAndCsr('ec-p256').csr;

  it('answers truncated, bit-flipped and random CSRs with a coded CairnError', () => {
    const mutated = fc.oneof(
      fc.nat({ max: good.length - 1 }).map((n) => good.subarray(0, n)),
      fc.tuple(fc.nat({ max: good.length - 1 }), fc.integer({ min: 1, max: 255 })).map(([at, x]) => {
        const copy = Buffer.from(good);
        copy[at] = copy[at]! ^ x;
        return copy;
      }),
      fc.uint8Array({ maxLength: 600 }).map((b) => Buffer.from(b)),
    );
    check(
      fc.property(mutated, (der) => {
        try {
          verifyCsr(der);
          return true; // a flip in an unsigned, ignored part may still verify
        } catch (err) {
          if (err instanceof CairnError && ['invalid_csr', 'csr_signature_invalid', 'unsupported_key_type'].includes(err.code)) return true;
          throw err;
        }
      }),
      { ...SETTINGS, numRuns: 1500 },
    );
  });

  it('decodes any text input to a coded refusal or DER', () => {
    check(fc.property(fc.string({ maxLength: 500 }), (text) => onlyThrows(CairnError, () => decodeCsrText(text))), SETTINGS);
  });
});

describe('fuzz: the JWT-SVID validator', () => {
  const key = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const bundle: Bundle = { trustDomain: 'fuzz.test', x509Authorities: [], jwtAuthorities: [{ kid: 'k1', jwk: publicJwkOf(key.publicKey) }] };
  const now = new Date('2026-11-23T12:00:00Z');
  const b64 = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString('base64url');
  const token = (header: object, claims: object): string => {
    const input = `${b64(header)}.${b64(claims)}`;
    return `${input}.${sign('sha256', Buffer.from(input), { key: key.privateKey, dsaEncoding: 'ieee-p1363' }).toString('base64url')}`;
  };
  const valid = token({ alg: 'ES256', kid: 'k1', typ: 'JWT' }, { sub: 'spiffe://fuzz.test/w', aud: ['a'], exp: now.getTime() / 1000 + 300 });
  const options = { audience: 'a', bundleFor: (td: string) => (td === 'fuzz.test' ? bundle : undefined), now };

  it('accepts the valid token and answers every mutation with a SpiffeError (never a crash, never acceptance of a changed payload)', () => {
    expect(validateJwtSvid(valid, options).spiffeId.toString()).toBe('spiffe://fuzz.test/w');
    const mutation = fc.tuple(fc.nat({ max: valid.length - 1 }), fc.constantFrom(...'ABCxyz019-_.='.split('')));
    check(
      fc.property(mutation, ([at, ch]) => {
        const mutated = valid.slice(0, at) + ch + valid.slice(at + 1);
        if (mutated === valid) return true;
        try {
          validateJwtSvid(mutated, options);
          // Accepted: only possible when every segment still decodes to the same bytes (a
          // non-canonical last base64url character); a changed header, payload or signature must fail.
          const parts = mutated.split('.');
          const orig = valid.split('.');
          return parts.length === 3 && parts.every((seg, i) => Buffer.from(seg, 'base64url').equals(Buffer.from(orig[i]!, 'base64url')));
        } catch (err) {
          if (err instanceof SpiffeError) return true;
          throw err;
        }
      }),
      SETTINGS,
    );
  });

  it('answers arbitrary headers and claims with a SpiffeError unless they are a valid SVID', () => {
    const json = fc.dictionary(fc.constantFrom('alg', 'kid', 'typ', 'crit', 'jku', 'sub', 'aud', 'exp', 'nbf', 'iat', 'x'), fc.jsonValue({ maxDepth: 2 }));
    check(fc.property(json, json, (h, c) => onlyThrows(SpiffeError, () => validateJwtSvid(token(h, c), options))), { ...SETTINGS, numRuns: 1000 });
    check(fc.property(fc.string({ maxLength: 400 }), (t) => onlyThrows(SpiffeError, () => validateJwtSvid(t, options))), SETTINGS);
  });
});

describe('fuzz: the SPIFFE bundle codec', () => {
  it('answers arbitrary JSON with a SpiffeError or a bundle, and round-trips what it encodes', async () => {
    const ca = await testCaCertificate('fuzz.test');
    const key = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const doc = encodeSpiffeBundle({ trustDomain: 'fuzz.test', x509Authorities: [ca.der], jwtAuthorities: [{ kid: 'k1', jwk: publicJwkOf(key.publicKey) }], sequence: 3 });
    const back = parseSpiffeBundle('fuzz.test', JSON.stringify(doc));
    expect(back.x509Authorities[0]!.equals(ca.der)).toBe(true);
    expect(back.jwtAuthorities.map((a) => a.kid)).toEqual(['k1']);
    const keyish = fc.record({ kty: fc.constantFrom('EC', 'RSA', 'OKP', 'oct', 7), use: fc.constantFrom('x509-svid', 'jwt-svid', 'sig', undefined), kid: fc.option(fc.string()), x5c: fc.option(fc.array(fc.string({ maxLength: 50 }))), crv: fc.option(fc.string({ maxLength: 8 })), x: fc.option(fc.string()), y: fc.option(fc.string()) }, { requiredKeys: [] });
    const docs = fc.oneof(fc.jsonValue({ maxDepth: 3 }), fc.record({ keys: fc.array(keyish, { maxLength: 4 }), spiffe_sequence: fc.oneof(fc.integer(), fc.string()), spiffe_refresh_hint: fc.oneof(fc.integer(), fc.string()) }, { requiredKeys: [] }));
    check(fc.property(docs, (d) => onlyThrows(SpiffeError, () => parseSpiffeBundle('fuzz.test', d))), SETTINGS);
    check(fc.property(fc.string({ maxLength: 300 }), (text) => onlyThrows(SpiffeError, () => parseSpiffeBundle('fuzz.test', text))), SETTINGS);
  });
});
