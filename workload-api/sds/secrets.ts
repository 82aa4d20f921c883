import { createHash } from 'node:crypto';
import { create } from '@bufbuild/protobuf';
import { anyPack, type Any } from '@bufbuild/protobuf/wkt';
import { derToPem, type Bundle } from '../../spiffe/bundle/bundle.js';
import { trustDomainId } from '../../spiffe/id.js';
import { DataSourceSchema } from '../gen/envoy/config/core/v3/base_pb.js';
import { TypedExtensionConfigSchema } from '../gen/envoy/config/core/v3/extension_pb.js';
import { CertificateValidationContextSchema, TlsCertificateSchema } from '../gen/envoy/extensions/transport_sockets/tls/v3/common_pb.js';
import { SecretSchema, type Secret } from '../gen/envoy/extensions/transport_sockets/tls/v3/secret_pb.js';
import { SPIFFECertValidatorConfigSchema } from '../gen/envoy/extensions/transport_sockets/tls/v3/tls_spiffe_validator_config_pb.js';
import type { WorkloadApiPorts, WorkloadSnapshot, X509Identity } from '../ports.js';

/** The xDS resource type every SDS response carries. */
export const SECRET_TYPE_URL = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret';
/** Envoy's SPIFFE certificate validator extension (envoy.extensions.transport_sockets.tls.v3.SPIFFECertValidatorConfig). */
export const SPIFFE_VALIDATOR = 'envoy.tls.cert_validator.spiffe';

/** The special resource names, as SPIRE's agent spells them by default (`sds` block of its config). */
export interface SdsNames {
  /** The caller's default (first) SVID as a tls_certificate. */
  readonly defaultSvid: string;
  /** The agent's own trust domain bundle as a validation context. */
  readonly defaultBundle: string;
  /** Every bundle the caller may use, for Envoy's SPIFFE certificate validator. */
  readonly allBundles: string;
}

export const DEFAULT_SDS_NAMES: SdsNames = { defaultSvid: 'default', defaultBundle: 'ROOTCA', allBundles: 'ALL' };

/** One secret, packed and hashed once, shared by every stream of callers holding the same snapshot. */
export interface PackedSecret {
  readonly name: string;
  readonly any: Any;
  /** A digest of the packed bytes: the resource version of incremental xDS, and the "did it change" test. */
  readonly digest: string;
}

/** What one caller may be served at one moment, by resource name. */
export interface SecretCatalog {
  /** The secret under `name`, or undefined when the caller is not entitled to it (or it does not exist). */
  get(name: string): PackedSecret | undefined;
  /** What an empty subscription (SotW) or a wildcard one (incremental) means: every bundle, then every SVID by SPIFFE ID. */
  wildcardNames(): readonly string[];
  /** The caller holds at least one SVID (a caller without one is refused, like on the Workload API). */
  readonly hasIdentity: boolean;
}

const pemChain = (ders: readonly Buffer[]): Buffer => Buffer.from(ders.map((d) => derToPem(d)).join(''));
const inline = (bytes: Uint8Array) => create(DataSourceSchema, { specifier: { case: 'inlineBytes', value: bytes } });

function pack(secret: Secret): PackedSecret {
  const any = anyPack(SecretSchema, secret);
  return { name: secret.name, any, digest: createHash('sha256').update(any.value).digest('base64url').slice(0, 22) };
}

function tlsCertificate(name: string, svid: X509Identity): PackedSecret {
  return pack(create(SecretSchema, {
    name,
    type: {
      case: 'tlsCertificate',
      value: create(TlsCertificateSchema, { certificateChain: inline(pemChain(svid.chain)), privateKey: inline(Buffer.from(derToPem(svid.privateKey, 'PRIVATE KEY'))) }),
    },
  }));
}

/** A validation context holding one trust domain's X.509 authorities as trusted_ca (any Envoy, no extension needed). */
function trustedCa(name: string, bundle: Bundle): PackedSecret {
  return pack(create(SecretSchema, {
    name,
    type: { case: 'validationContext', value: create(CertificateValidationContextSchema, { trustedCa: inline(pemChain(bundle.x509Authorities)) }) },
  }));
}

/** A validation context for Envoy's SPIFFE validator: each trust domain checked against its own bundle only. */
function spiffeValidator(name: string, bundles: readonly Bundle[]): PackedSecret {
  const config = create(SPIFFECertValidatorConfigSchema, {
    trustDomains: [...bundles]
      .sort((a, b) => (a.trustDomain < b.trustDomain ? -1 : a.trustDomain > b.trustDomain ? 1 : 0))
      .map((b) => ({ name: b.trustDomain, trustBundle: inline(pemChain(b.x509Authorities)) })),
  });
  return pack(create(SecretSchema, {
    name,
    type: {
      case: 'validationContext',
      value: create(CertificateValidationContextSchema, {
        customValidatorConfig: create(TypedExtensionConfigSchema, { name: SPIFFE_VALIDATOR, typedConfig: anyPack(SPIFFECertValidatorConfigSchema, config) }),
      }),
    },
  }));
}

/**
 * The catalog of one snapshot: entitlement is exactly the snapshot's SVIDs and the trust domains the
 * agent holds bundles for among its own and the caller's federated ones, so a name the caller is
 * not entitled to resolves to nothing, whatever it is. Secrets are packed lazily, once.
 */
export function secretCatalog(ports: WorkloadApiPorts, snap: WorkloadSnapshot, names: SdsNames): SecretCatalog {
  const svids = new Map<string, X509Identity>();
  for (const s of snap.x509Svids) if (!svids.has(s.spiffeId)) svids.set(s.spiffeId, s);
  const own = ports.trustDomain();
  const bundles = new Map<string, Bundle>();
  for (const td of [own, ...snap.federatedTrustDomains]) {
    const b = ports.bundle(td);
    if (b && !bundles.has(trustDomainId(td))) bundles.set(trustDomainId(td), b);
  }
  // only what resolves is kept: names a client makes up must not grow a catalog that lives as long as its snapshot
  const packed = new Map<string, PackedSecret>();
  const build = (name: string): PackedSecret | undefined => {
    if (name === names.defaultSvid) return snap.x509Svids[0] ? tlsCertificate(name, snap.x509Svids[0]) : undefined;
    if (name === names.defaultBundle) {
      const b = bundles.get(trustDomainId(own));
      return b ? trustedCa(name, b) : undefined;
    }
    if (name === names.allBundles) return bundles.size > 0 ? spiffeValidator(name, [...bundles.values()]) : undefined;
    const svid = svids.get(name);
    if (svid) return tlsCertificate(name, svid);
    const bundle = bundles.get(name);
    return bundle ? trustedCa(name, bundle) : undefined;
  };
  return {
    hasIdentity: snap.x509Svids.length > 0,
    get(name) {
      let secret = packed.get(name);
      if (!secret) {
        secret = build(name);
        if (secret) packed.set(name, secret);
      }
      return secret;
    },
    wildcardNames: () => [...bundles.keys(), ...svids.keys()],
  };
}

/** Catalogs per snapshot: a thousand Envoys of one workload share the snapshot, so each secret is packed once. */
export class CatalogCache {
  private readonly bySnapshot = new WeakMap<WorkloadSnapshot, SecretCatalog>();

  constructor(private readonly ports: WorkloadApiPorts, private readonly names: SdsNames) {}

  get(snap: WorkloadSnapshot): SecretCatalog {
    let catalog = this.bySnapshot.get(snap);
    if (!catalog) this.bySnapshot.set(snap, (catalog = secretCatalog(this.ports, snap, this.names)));
    return catalog;
  }
}

/** Identifies a list of secrets by names and contents: equal fingerprints, nothing new to send. */
export function fingerprint(secrets: readonly PackedSecret[]): string {
  return secrets.map((s) => `${s.name}\0${s.digest}`).join('\n');
}
