import { createPrivateKey, sign } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { X509SvidMessage } from '../../contract/agent-api.js';
import type { X509PopChallenge } from '../../contract/node-attestation.js';
import { NodeAttestationPaths } from '../../contract/paths.js';
import { pemToDerList } from '../../spiffe/bundle/bundle.js';
import { CaClient } from '../ca-client.js';

/** How an agent without a join token proves itself: the CA's address and pin are configured, not in a token. */
export interface ConfiguredCa {
  readonly caUrl: string;
  /** `sha256:<base64>` of the CA's TLS authority key (`cairn ca pin`, or GET /v1/ca/tls). */
  readonly caPin: string;
  readonly trustDomain: string;
}

export interface PsatAttestation extends ConfiguredCa {
  readonly kind: 'k8s_psat';
  readonly cluster: string;
  /** The projected service-account token (the kubelet rotates it; read at each attestation). */
  readonly tokenFile: string;
}

export interface X509PopAttestation extends ConfiguredCa {
  readonly kind: 'x509pop';
  /** PEM: the device certificate, then any intermediates. */
  readonly certFile: string;
  /** PEM private key of the device certificate (it signs the CA's nonce; it is never sent). */
  readonly keyFile: string;
}

export type NodeAttestation = PsatAttestation | X509PopAttestation;

export class AttestationConfigError extends Error {
  override readonly name = 'AttestationConfigError';
}

function readText(path: string, what: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw new AttestationConfigError(`cannot read ${what} ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

/** Runs the attestor's exchange with the CA; answers the agent's first SVID. */
export function attestNode(config: NodeAttestation, csrBase64: string): Promise<{ svid: X509SvidMessage; caUrl: string; authorityPem: string }> {
  if (config.kind === 'k8s_psat') {
    const token = readText(config.tokenFile, 'the service-account token').trim();
    return CaClient.attestWith(config.caUrl, config.caPin, (base, ca) =>
      CaClient.post<X509SvidMessage>(base, ca, NodeAttestationPaths.attestPsat, { trustDomain: config.trustDomain, cluster: config.cluster, token, csr: csrBase64 }),
    );
  }
  const chain = pemToDerList(readText(config.certFile, 'the device certificate'));
  if (chain.length === 0) throw new AttestationConfigError(`${config.certFile} holds no PEM certificate`);
  let key;
  try {
    key = createPrivateKey(readText(config.keyFile, 'the device key'));
  } catch (err) {
    if (err instanceof AttestationConfigError) throw err;
    throw new AttestationConfigError(`${config.keyFile} is not a PEM private key`);
  }
  return CaClient.attestWith(config.caUrl, config.caPin, async (base, ca) => {
    const challenge = await CaClient.post<X509PopChallenge>(base, ca, NodeAttestationPaths.x509PopChallenge, { trustDomain: config.trustDomain, chain: chain.map((d) => d.toString('base64')) });
    const signature = sign('sha256', Buffer.from(challenge.nonce, 'base64'), key);
    return CaClient.post<X509SvidMessage>(base, ca, NodeAttestationPaths.attestX509Pop, { challengeId: challenge.challengeId, signature: signature.toString('base64'), csr: csrBase64 });
  });
}
