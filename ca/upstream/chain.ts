import 'reflect-metadata';
import { X509Certificate as NodeX509, createPrivateKey, type KeyObject } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { CairnError, type ErrorCode } from '../../lib/errors.js';
import type { KeyType } from '../authority/key-types.js';

/**
 * Checking what an operator hands over as an upstream authority: PEM certificates (the upstream CA
 * first, then what it chains to, up to a self-signed root) and, for a disk upstream, its private
 * key. Pure functions of their input and `now`; every refusal names the API field it is about, so
 * the CLI can name the flag. Key material never appears in a message.
 */

/** At most this many certificates in a chain, and this many bytes of PEM (refused before parsing). */
export const MAX_CHAIN_CERTIFICATES = 8;
export const MAX_PEM_BYTES = 64 * 1024;

const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END \1-----/g;

const refuse = (code: ErrorCode, field: string, message: string, details: Record<string, unknown> = {}): CairnError =>
  new CairnError(code, `${field}: ${message}`, { details: { field, ...details } });

/** The DER certificates of a PEM text; refuses anything else in it, and a text with none. */
export function certificatesFromPem(pem: string, field: string): Buffer[] {
  if (Buffer.byteLength(pem, 'utf8') > MAX_PEM_BYTES) throw refuse('invalid_upstream_ca', field, `more than ${MAX_PEM_BYTES} bytes of PEM`);
  // counted before the block pattern runs: each unterminated BEGIN would make it scan the rest of the text
  if ((pem.match(/-----BEGIN /g) ?? []).length > MAX_CHAIN_CERTIFICATES) throw refuse('invalid_upstream_ca', field, `holds more than ${MAX_CHAIN_CERTIFICATES} PEM blocks`);
  const ders: Buffer[] = [];
  for (const m of pem.matchAll(PEM_BLOCK)) {
    if (m[1] !== 'CERTIFICATE') throw refuse('invalid_upstream_ca', field, `holds a PEM "${m[1]}" block; only CERTIFICATE blocks belong here`);
    ders.push(Buffer.from(m[2]!.replace(/\s+/g, ''), 'base64'));
  }
  if (ders.length === 0) throw refuse('invalid_upstream_ca', field, 'holds no PEM certificate (-----BEGIN CERTIFICATE-----)');
  if (ders.length > MAX_CHAIN_CERTIFICATES) throw refuse('invalid_upstream_ca', field, `holds ${ders.length} certificates; at most ${MAX_CHAIN_CERTIFICATES} are accepted`);
  ders.forEach((der, i) => {
    try {
      new NodeX509(der);
      new x509.X509Certificate(der);
    } catch {
      throw refuse('invalid_upstream_ca', field, `certificate ${i + 1} is not a valid X.509 certificate`);
    }
  });
  return ders;
}

/** An unencrypted PKCS#8, SEC1 or PKCS#1 private key in PEM; the message never quotes it. */
export function privateKeyFromPem(pem: string, field: string): KeyObject {
  if (Buffer.byteLength(pem, 'utf8') > MAX_PEM_BYTES) throw refuse('invalid_upstream_ca', field, `more than ${MAX_PEM_BYTES} bytes of PEM`);
  if (/-----BEGIN ENCRYPTED PRIVATE KEY-----|Proc-Type: 4,ENCRYPTED/.test(pem)) {
    throw refuse('invalid_upstream_ca', field, 'the private key is encrypted; decrypt it first (openssl pkey -in KEY -out PLAIN)');
  }
  if (!/-----BEGIN (?:EC |RSA )?PRIVATE KEY-----/.test(pem)) throw refuse('invalid_upstream_ca', field, 'holds no PEM private key (a PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY block)');
  try {
    return createPrivateKey({ key: pem, format: 'pem' });
  } catch {
    throw refuse('invalid_upstream_ca', field, 'the private key does not parse (PKCS#8, SEC1 or PKCS#1 PEM, unencrypted)');
  }
}

/** Which of our signing profiles a key fits: EC P-256, EC P-384, or RSA of 2048 bits or more. */
export function keyTypeOfKey(key: KeyObject, field: string): KeyType {
  const d = key.asymmetricKeyDetails ?? {};
  if (key.asymmetricKeyType === 'ec' && d.namedCurve === 'prime256v1') return 'ec-p256';
  if (key.asymmetricKeyType === 'ec' && d.namedCurve === 'secp384r1') return 'ec-p384';
  if (key.asymmetricKeyType === 'rsa' && (d.modulusLength ?? 0) >= 2048) return 'rsa-2048';
  throw refuse('unsupported_key_type', field, 'the upstream key must be EC P-256, EC P-384 or RSA of at least 2048 bits');
}

const subjectOf = (c: NodeX509): string => c.subject.replace(/\n/g, ', ');

/** keyCertSign, cA, and room for one CA (ours) below it. `what` names the certificate in messages. */
export function checkCanSignCas(der: Buffer, field: string, what: string): void {
  const cert = new x509.X509Certificate(der);
  const bc = cert.getExtension(x509.BasicConstraintsExtension);
  const subject = subjectOf(new NodeX509(der));
  if (!bc?.ca) throw refuse('upstream_not_ca', field, `${what} (${subject}) is not a CA certificate (basicConstraints cA is not set)`);
  const ku = cert.getExtension(x509.KeyUsagesExtension);
  if (ku && !(ku.usages & x509.KeyUsageFlags.keyCertSign)) throw refuse('upstream_not_ca', field, `${what} (${subject}) may not sign certificates (its keyUsage lacks keyCertSign)`);
  if (bc.pathLength === 0) {
    throw refuse('upstream_not_ca', field, `${what} (${subject}) has pathLenConstraint 0: it may not sign another CA, and the trust domain's CA would be one below it`);
  }
}

/**
 * Orders `ders` into a path from `first` up to a self-signed root, each certificate verified by the
 * next and valid at `now`; certificates that are not on the path are ignored. Returns the path
 * from `first`'s issuer up to and including the root.
 */
export function pathToRoot(first: Buffer, ders: readonly Buffer[], field: string, now: Date): Buffer[] {
  const pool = ders.map((d) => ({ der: d, cert: new NodeX509(d) }));
  const path: Buffer[] = [];
  let current = new NodeX509(first);
  for (let depth = 0; depth <= MAX_CHAIN_CERTIFICATES; depth++) {
    if (current.checkIssued(current) && current.verify(current.publicKey)) return path;
    const parent = pool.find((p) => current.checkIssued(p.cert) && current.verify(p.cert.publicKey) && !path.some((d) => d.equals(p.der)));
    if (!parent) {
      throw refuse('invalid_upstream_ca', field, `no certificate given signs ${subjectOf(current)} (issuer ${current.issuer.replace(/\n/g, ', ')}): append the chain up to the self-signed root, whose certificate goes into the trust bundle`);
    }
    checkCanSignCas(parent.der, field, 'a certificate of the upstream chain');
    within(parent.cert, now, field);
    path.push(parent.der);
    current = parent.cert;
  }
  throw refuse('invalid_upstream_ca', field, 'the chain does not end at a self-signed root');
}

/** Refuses a certificate not valid at `now` (not yet, or no longer). */
export function checkValidAt(der: Buffer, now: Date, field: string): void {
  within(new NodeX509(der), now, field);
}

/** A certificate made moments ago on a host whose clock runs a little ahead is not refused. */
const NOT_BEFORE_SKEW_MS = 5 * 60_000;

function within(c: NodeX509, now: Date, field: string): void {
  if (new Date(c.validFrom).getTime() > now.getTime() + NOT_BEFORE_SKEW_MS) throw refuse('invalid_upstream_ca', field, `${subjectOf(c)} is not valid before ${new Date(c.validFrom).toISOString()}`);
  if (new Date(c.validTo) <= now) throw refuse('upstream_expires_too_soon', field, `${subjectOf(c)} expired at ${new Date(c.validTo).toISOString()}`);
}

/** The earliest expiry along a chain: no certificate below it may outlive it. */
export function chainNotAfter(ders: readonly Buffer[]): Date {
  return new Date(Math.min(...ders.map((d) => new Date(new NodeX509(d).validTo).getTime())));
}

/**
 * Refuses a chain that expires before `until` (a new CA certificate would outlive its issuer, and
 * every SVID it signs would stop verifying early). The issue asks for a refusal, not a silently
 * shortened CA: the operator renews the upstream or lowers --ca-ttl.
 */
export function checkOutlives(ders: readonly Buffer[], until: Date, field: string, hint: string): void {
  const end = chainNotAfter(ders);
  if (end < until) {
    throw refuse('upstream_expires_too_soon', field, `the upstream chain expires at ${end.toISOString()}, before a CA certificate made now would (${until.toISOString()}); ${hint}`, {
      upstreamNotAfter: end.toISOString(),
      caNotAfter: until.toISOString(),
    });
  }
}

/** The self-signed certificates of a chain: what the trust bundle carries. */
export function rootsOf(ders: readonly Buffer[]): Buffer[] {
  return ders.filter((d) => {
    const c = new NodeX509(d);
    return c.checkIssued(c) && c.verify(c.publicKey);
  });
}

/** Whether `key` is the private key of `certDer`'s public key. */
export function keyMatches(certDer: Buffer, key: KeyObject): boolean {
  return new NodeX509(certDer).checkPrivateKey(key);
}

/** DER certificates concatenated, and back (how a chain is stored). */
export const joinDer = (ders: readonly Buffer[]): Buffer => Buffer.concat(ders);
