import { create, toBinary, type DescMessage, type MessageShape } from '@bufbuild/protobuf';
import { BinaryReader } from '@bufbuild/protobuf/wire';
import { x509BundleDer, type Bundle } from '../spiffe/bundle/bundle.js';
import { SpiffeId, trustDomainId } from '../spiffe/id.js';
import {
  JWTBundlesResponseSchema, X509BundlesResponseSchema, X509SVIDResponseSchema, X509SVIDSchema,
  type JWTBundlesResponse, type X509BundlesResponse, type X509SVIDResponse,
} from './gen/workload_pb.js';
import type { WorkloadApiPorts, WorkloadSnapshot } from './ports.js';

/**
 * Plain JWKS of a bundle's JWT keys (FetchJWTBundles carries only JWT keys). No `use` member, as the
 * SPIRE agent sends it: JWT libraries such as jose skip keys whose `use` is not "sig".
 */
export function jwtJwks(bundle: Bundle): Uint8Array {
  return Buffer.from(JSON.stringify({ keys: bundle.jwtAuthorities.map((a) => ({ ...a.jwk, kid: a.kid })) }));
}

function x509State(ports: WorkloadApiPorts, snap: WorkloadSnapshot): X509SVIDResponse | undefined {
  if (snap.x509Svids.length === 0) return undefined;
  const federated: Record<string, Uint8Array> = {};
  for (const td of snap.federatedTrustDomains) {
    const b = ports.bundle(td);
    if (b) federated[trustDomainId(td)] = x509BundleDer(b);
  }
  return create(X509SVIDResponseSchema, {
    svids: snap.x509Svids.map((s) => {
      const own = ports.bundle(SpiffeId.parse(s.spiffeId).trustDomain);
      return create(X509SVIDSchema, {
        spiffeId: s.spiffeId,
        x509Svid: Buffer.concat(s.chain as Buffer[]),
        x509SvidKey: s.privateKey,
        bundle: own ? x509BundleDer(own) : new Uint8Array(),
        hint: s.hint ?? '',
      });
    }),
    federatedBundles: federated,
    crl: [...(ports.crls?.() ?? [])],
  });
}

function bundleMaps(ports: WorkloadApiPorts, snap: WorkloadSnapshot): { x509: X509BundlesResponse; jwt: JWTBundlesResponse } {
  const x509: Record<string, Uint8Array> = {};
  const jwt: Record<string, Uint8Array> = {};
  for (const td of [ports.trustDomain(), ...snap.federatedTrustDomains]) {
    const b = ports.bundle(td);
    if (!b) continue;
    x509[trustDomainId(td)] = x509BundleDer(b);
    jwt[trustDomainId(td)] = jwtJwks(b);
  }
  return { x509: create(X509BundlesResponseSchema, { bundles: x509, crl: [...(ports.crls?.() ?? [])] }), jwt: create(JWTBundlesResponseSchema, { bundles: jwt }) };
}

/** One state, encoded once and shared by every stream that sends it. */
export interface Encoded<T> {
  /** For connect-node's binary pipeline: a message that serializes to exactly `bytes` (see preEncoded). */
  readonly message: T;
  /** The message itself, for connect-node's JSON pipeline (it writes JSON from fields, not unknown bytes). */
  readonly fields: T;
  readonly bytes: Uint8Array;
  /** `bytes` as one gRPC length-prefixed message, for the direct path to write as is. */
  readonly frame: Buffer;
}

export type StateKind = 'x509' | 'x509Bundles' | 'jwtBundles';

/**
 * A message that serializes to exactly `bytes` at the cost of a copy: every top-level field is
 * carried as an unknown field, which protobuf writes back verbatim. The RPC library serializes
 * each stream's message itself; this makes that ~1 µs instead of a full reflective encode.
 */
function preEncoded<Desc extends DescMessage>(schema: Desc, bytes: Uint8Array): MessageShape<Desc> {
  const message = create(schema);
  const fields: { no: number; wireType: number; data: Uint8Array }[] = [];
  const reader = new BinaryReader(bytes);
  while (reader.pos < reader.len) {
    const [no, wireType] = reader.tag();
    fields.push({ no, wireType, data: reader.skip(wireType, no) });
  }
  (message as { $unknown?: typeof fields }).$unknown = fields;
  return message;
}

/** A gRPC length-prefixed message: flag 0 (uncompressed), big-endian length, the bytes. */
export function grpcFrame(bytes: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(5 + bytes.length);
  out[0] = 0;
  out.writeUInt32BE(bytes.length, 1);
  out.set(bytes, 5);
  return out;
}

const BUILDERS = {
  x509: { schema: X509SVIDResponseSchema, build: x509State },
  x509Bundles: { schema: X509BundlesResponseSchema, build: (ports: WorkloadApiPorts, snap: WorkloadSnapshot) => bundleMaps(ports, snap).x509 },
  jwtBundles: { schema: JWTBundlesResponseSchema, build: (ports: WorkloadApiPorts, snap: WorkloadSnapshot) => bundleMaps(ports, snap).jwt },
} as const;

export interface StateMessages {
  x509: X509SVIDResponse;
  x509Bundles: X509BundlesResponse;
  jwtBundles: JWTBundlesResponse;
}

/**
 * Encoded states per snapshot: ten thousand streams of one workload share one snapshot, so a
 * rotation is built and encoded once, not once per stream (both server paths share the cache).
 */
export class StateCache {
  private readonly bySnapshot = new WeakMap<WorkloadSnapshot, Map<StateKind, Encoded<unknown> | undefined>>();

  constructor(private readonly ports: WorkloadApiPorts) {}

  /** The state of `kind` for this snapshot; undefined when the caller holds no X.509-SVID (x509 only). */
  get<K extends StateKind>(snap: WorkloadSnapshot, kind: K): Encoded<StateMessages[K]> | undefined {
    let kinds = this.bySnapshot.get(snap);
    if (!kinds) this.bySnapshot.set(snap, (kinds = new Map()));
    if (!kinds.has(kind)) {
      const { schema, build } = BUILDERS[kind];
      const message = build(this.ports, snap);
      if (message === undefined) kinds.set(kind, undefined);
      else {
        const bytes = toBinary(schema as DescMessage, message);
        kinds.set(kind, { message: preEncoded(schema, bytes), fields: message, bytes, frame: grpcFrame(bytes) });
      }
    }
    return kinds.get(kind) as Encoded<StateMessages[K]> | undefined;
  }
}
