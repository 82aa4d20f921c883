import 'reflect-metadata';
import { createPrivateKey, webcrypto, type KeyObject } from 'node:crypto';
import { generateKeyPair } from '../../lib/pkcs10.js';
import { spkiPin } from '../../lib/tls-client.js';
import { isIP } from 'node:net';
import * as x509 from '@peculiar/x509';
import type { Clock } from '../../lib/clock.js';
import { addSeconds } from '../../lib/clock.js';
import type { Logger } from '../../lib/log.js';
import { randomSerial, type Random } from '../../lib/random.js';
import { derToPem } from '../../spiffe/bundle/bundle.js';
import { profileOf } from '../authority/key-types.js';
import type { Sealer } from '../authority/sealing.js';
import type { ServerTlsStore } from './store.js';

export const SEALING_CONTEXT = 'cairn-server-tls-authority';
const AUTHORITY_TTL_SECONDS = 10 * 365 * 86400;
export const SERVER_CERT_TTL_SECONDS = 30 * 86400;

export interface ServerTlsDeps {
  readonly store: ServerTlsStore;
  readonly sealer: Sealer;
  readonly clock: Clock;
  readonly random: Random;
  readonly logger: Logger;
}

export interface ServerCredentials {
  /** PEM: the server certificate followed by the installation's TLS authority. */
  readonly certChainPem: string;
  readonly keyPem: string;
  readonly authorityPem: string;
  /** What bootstrap tokens carry: sha256 of the authority's SubjectPublicKeyInfo. */
  readonly pin: string;
  readonly notAfter: Date;
}

const crypto = webcrypto as unknown as Parameters<typeof x509.X509CertificateGenerator.create>[1];

async function signingKeyOf(privateKey: KeyObject) {
  return webcrypto.subtle.importKey('pkcs8', privateKey.export({ format: 'der', type: 'pkcs8' }), profileOf('ec-p256').webCryptoImport, false, ['sign']);
}

/**
 * The CA's own TLS identity: one self-signed authority per installation (shared by replicas
 * through the database), and a short-lived server certificate per replica signed by it.
 * Agents and devices pin the authority's key on first contact.
 */
export class ServerTlsService {
  constructor(private readonly deps: ServerTlsDeps) {}

  private async authority(): Promise<{ certificate: Buffer; privateKey: KeyObject }> {
    let record = await this.deps.store.get();
    if (!record) {
      const now = this.deps.clock.now();
      const { privateKey, publicKey } = generateKeyPair('ec-p256');
      const serial = randomSerial(this.deps.random).toString('hex');
      const name: x509.JsonName = [{ '2.5.4.10': ['Cairn'] }, { '2.5.4.3': ['Cairn server TLS authority'] }, { '2.5.4.5': [serial] }];
      const pub = await webcrypto.subtle.importKey('spki', publicKey.export({ format: 'der', type: 'spki' }), profileOf('ec-p256').webCryptoImport, true, ['verify']);
      const cert = await x509.X509CertificateGenerator.create(
        {
          serialNumber: serial,
          subject: name,
          issuer: name,
          notBefore: addSeconds(now, -60),
          notAfter: addSeconds(now, AUTHORITY_TTL_SECONDS),
          publicKey: pub,
          signingKey: await signingKeyOf(privateKey),
          signingAlgorithm: profileOf('ec-p256').webCryptoSign,
          extensions: [
            new x509.BasicConstraintsExtension(true, 0, true),
            new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
            await x509.SubjectKeyIdentifierExtension.create(pub, false, crypto),
          ],
        },
        crypto,
      );
      await this.deps.store.insertIfAbsent({
        keyType: 'ec-p256',
        certificate: Buffer.from(cert.rawData),
        privateKeySealed: this.deps.sealer.seal(privateKey.export({ format: 'der', type: 'pkcs8' }), SEALING_CONTEXT),
        notAfter: cert.notAfter,
        createdAt: now,
      });
      record = (await this.deps.store.get())!;
      this.deps.logger.info({ event: 'server_tls_authority.created' }, 'server TLS authority created');
    }
    const pkcs8 = this.deps.sealer.open(record.privateKeySealed, SEALING_CONTEXT);
    return { certificate: record.certificate, privateKey: createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' }) };
  }

  async pin(): Promise<string> {
    return spkiPin((await this.authority()).certificate);
  }

  /** A fresh server certificate for `hosts` (DNS names and IP addresses). */
  async serverCredentials(hosts: readonly string[]): Promise<ServerCredentials> {
    const auth = await this.authority();
    const now = this.deps.clock.now();
    const { privateKey, publicKey } = generateKeyPair('ec-p256');
    const pub = await webcrypto.subtle.importKey('spki', publicKey.export({ format: 'der', type: 'spki' }), profileOf('ec-p256').webCryptoImport, true, ['verify']);
    const authCert = new x509.X509Certificate(auth.certificate);
    const unique = [...new Set(hosts)];
    const cert = await x509.X509CertificateGenerator.create(
      {
        serialNumber: randomSerial(this.deps.random).toString('hex'),
        subject: [{ '2.5.4.10': ['Cairn'] }, { '2.5.4.3': [(unique[0] ?? 'cairn-ca').slice(0, 64)] }],
        issuer: authCert.subjectName,
        notBefore: addSeconds(now, -60),
        notAfter: addSeconds(now, SERVER_CERT_TTL_SECONDS),
        publicKey: pub,
        signingKey: await signingKeyOf(auth.privateKey),
        signingAlgorithm: profileOf('ec-p256').webCryptoSign,
        extensions: [
          new x509.BasicConstraintsExtension(false, undefined, true),
          new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
          new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth], false),
          await x509.AuthorityKeyIdentifierExtension.create(authCert, false, crypto),
          new x509.SubjectAlternativeNameExtension(unique.map((h) => (isIP(h) ? { type: 'ip' as const, value: h } : { type: 'dns' as const, value: h }))),
        ],
      },
      crypto,
    );
    const authorityPem = derToPem(auth.certificate);
    return {
      certChainPem: derToPem(Buffer.from(cert.rawData)) + authorityPem,
      keyPem: privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
      authorityPem,
      pin: spkiPin(auth.certificate),
      notAfter: cert.notAfter,
    };
  }
}
