import { Type, type Static } from 'typebox';
import { TrustDomainName } from './common.js';

export { NodeAttestationPaths } from './paths.js';

const Csr = Type.String({ minLength: 1, maxLength: 32768, description: 'PKCS#10 CSR, base64 DER or PEM; only its key is used' });
const Name = Type.String({ minLength: 1, maxLength: 63 });

export const AttestPsatBody = Type.Object(
  { trustDomain: TrustDomainName, cluster: Name, token: Type.String({ minLength: 1, maxLength: 16384 }), csr: Csr },
  { additionalProperties: false },
);
export const X509PopChallengeBody = Type.Object(
  { trustDomain: TrustDomainName, chain: Type.Array(Type.String({ minLength: 1, maxLength: 65536, description: 'base64 DER' }), { minItems: 1, maxItems: 5 }) },
  { additionalProperties: false },
);
export const X509PopChallenge = Type.Object({ challengeId: Type.String(), nonce: Type.String({ description: 'base64; sign it (SHA-256) with the device key' }), expiresAt: Type.String() });
export type X509PopChallenge = Static<typeof X509PopChallenge>;
export const AttestX509PopBody = Type.Object(
  { challengeId: Type.String({ minLength: 1, maxLength: 64 }), signature: Type.String({ minLength: 1, maxLength: 2048, description: 'base64 signature over the nonce' }), csr: Csr },
  { additionalProperties: false },
);

export const AttestorParams = Type.Object({ trustDomain: TrustDomainName, name: Name });
export const AttestorKindParams = Type.Object({ trustDomain: TrustDomainName, kind: Type.Union([Type.Literal('k8s-psat'), Type.Literal('x509pop')]), name: Name });
export const TrustDomainParams = Type.Object({ trustDomain: TrustDomainName });

const Pem = (description: string) => Type.String({ minLength: 1, maxLength: 262144, description });
const HostPath = (instead: string) =>
  Type.String({ maxLength: 4096, deprecated: true, description: `Refused (400): a path on the CA host, which the admin API never reads. Send ${instead} instead.` });

export const PsatClusterBody = Type.Object(
  {
    mode: Type.Union([Type.Literal('token_review'), Type.Literal('jwks')]),
    audience: Type.Optional(Type.String({ minLength: 1, maxLength: 256 })),
    allowedServiceAccounts: Type.Array(Type.String({ minLength: 3, maxLength: 253 }), { minItems: 1, maxItems: 100 }),
    kubeCredentials: Type.Optional(Type.String({ minLength: 1, maxLength: 63, description: 'token_review: a credential set the CA was started with (--kube-credentials), or "in-cluster" (the default when no apiServer is given)' })),
    apiServer: Type.Optional(Type.String({ maxLength: 2048, description: 'token_review with inline credentials: the API server URL (https)' })),
    apiCaCertificates: Type.Optional(Pem("PEM of the API server's CA (default: the system's roots)")),
    apiToken: Type.Optional(Type.String({ minLength: 1, maxLength: 16384, description: 'bearer token for the API server; stored sealed under the KEK, never shown again', writeOnly: true })),
    issuer: Type.Optional(Type.String({ maxLength: 2048 })),
    jwks: Type.Optional(Type.Object({ keys: Type.Array(Type.Record(Type.String(), Type.Unknown()), { maxItems: 50 }) })),
    jwksUrl: Type.Optional(Type.String({ maxLength: 2048 })),
    jwksCaCertificates: Type.Optional(Pem("PEM of the JWKS URL's CA (default: the system's roots)")),
    apiCaFile: Type.Optional(HostPath('apiCaCertificates (PEM content)')),
    apiTokenFile: Type.Optional(HostPath('apiToken (the token itself) or kubeCredentials')),
    jwksCaFile: Type.Optional(HostPath('jwksCaCertificates (PEM content)')),
  },
  { additionalProperties: false },
);
export type PsatClusterBody = Static<typeof PsatClusterBody>;
export const X509PopCaBody = Type.Object({ caCertificates: Type.String({ minLength: 1, maxLength: 262144, description: 'PEM' }) }, { additionalProperties: false });

export const AttestorView = Type.Object({
  trustDomain: Type.String(),
  kind: Type.String(),
  name: Type.String(),
  config: Type.Record(Type.String(), Type.Unknown()),
  createdAt: Type.String(),
  updatedAt: Type.String(),
});
export const AttestorList = Type.Object({ attestors: Type.Array(AttestorView) });
export const CaTlsView = Type.Object({
  url: Type.String({ description: 'the TLS listener agents attest to' }),
  pin: Type.String({ description: 'sha256:<base64> of the installation TLS authority key, for --ca-pin' }),
});
