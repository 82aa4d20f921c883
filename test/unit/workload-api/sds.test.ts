import { create } from '@bufbuild/protobuf';
import { anyUnpack } from '@bufbuild/protobuf/wkt';
import { Code, ConnectError } from '@connectrpc/connect';
import { describe, expect, it } from 'vitest';
import type { Bundle } from '../../../spiffe/bundle/bundle.js';
import { DeltaDiscoveryRequestSchema, DiscoveryRequestSchema } from '../../../workload-api/gen/envoy/service/discovery/v3/discovery_pb.js';
import { SecretSchema } from '../../../workload-api/gen/envoy/extensions/transport_sockets/tls/v3/secret_pb.js';
import { SPIFFECertValidatorConfigSchema } from '../../../workload-api/gen/envoy/extensions/transport_sockets/tls/v3/tls_spiffe_validator_config_pb.js';
import type { WorkloadApiPorts, WorkloadSnapshot, X509Identity } from '../../../workload-api/ports.js';
import { DeltaStream } from '../../../workload-api/sds/delta.js';
import { Inbox } from '../../../workload-api/sds/inbox.js';
import { DEFAULT_SDS_NAMES, SECRET_TYPE_URL, secretCatalog, type SecretCatalog } from '../../../workload-api/sds/secrets.js';
import { MAX_RESOURCE_NAMES, SotwStream } from '../../../workload-api/sds/sotw.js';

const TD = 'unit.test';
const svid = (path: string, tag = 'v1'): X509Identity => ({ spiffeId: `spiffe://${TD}/${path}`, chain: [Buffer.from(`${path}-${tag}`)], privateKey: Buffer.from(`key-${path}-${tag}`) });
const bundle = (td: string, tag = 'v1'): Bundle => ({ trustDomain: td, x509Authorities: [Buffer.from(`ca-${td}-${tag}`)], jwtAuthorities: [] });

function fakePorts(bundles: Map<string, Bundle>): WorkloadApiPorts {
  return {
    ready: () => true,
    attestConnection: () => { throw new Error('unused'); },
    trustDomain: () => TD,
    bundle: (td) => bundles.get(td),
    onChange: () => () => undefined,
    now: () => new Date(0),
  };
}

const catalogOf = (snap: WorkloadSnapshot, bundles = new Map([[TD, bundle(TD)]])): SecretCatalog => secretCatalog(fakePorts(bundles), snap, DEFAULT_SDS_NAMES);
const snapshot = (svids: X509Identity[], federated: string[] = []): WorkloadSnapshot => ({ x509Svids: svids, federatedTrustDomains: federated });
let n = 0;
const nonce = (): string => `nonce-${++n}`;
const sotwReq = (init: Parameters<typeof create<typeof DiscoveryRequestSchema>>[1]) => create(DiscoveryRequestSchema, { typeUrl: SECRET_TYPE_URL, ...init });
const deltaReq = (init: Parameters<typeof create<typeof DeltaDiscoveryRequestSchema>>[1]) => create(DeltaDiscoveryRequestSchema, { typeUrl: SECRET_TYPE_URL, ...init });
const unpack = (any: Parameters<typeof anyUnpack>[0]) => anyUnpack(any, SecretSchema)!;

describe('SDS secret catalog', () => {
  it('entitles exactly the snapshot: default is the first SVID, SPIFFE IDs by name, bundles of its own and federated trust domains', () => {
    const fed = 'fed.test';
    const bundles = new Map([[TD, bundle(TD)], [fed, bundle(fed)], ['stranger.test', bundle('stranger.test')]]);
    const c = catalogOf(snapshot([svid('a'), svid('b')], [fed]), bundles);
    const def = unpack(c.get('default')!.any);
    expect(def.name).toBe('default');
    expect(def.type.case).toBe('tlsCertificate');
    const tls = def.type.case === 'tlsCertificate' ? def.type.value : undefined;
    expect(Buffer.from(tls!.certificateChain!.specifier.value as Uint8Array).toString()).toContain(Buffer.from('a-v1').toString('base64'));
    expect(Buffer.from(tls!.privateKey!.specifier.value as Uint8Array).toString()).toMatch(/^-----BEGIN PRIVATE KEY-----/);
    expect(unpack(c.get(`spiffe://${TD}/b`)!.any).name).toBe(`spiffe://${TD}/b`);
    expect(unpack(c.get('ROOTCA')!.any).type.case).toBe('validationContext');
    expect(c.get(`spiffe://${fed}`)).toBeDefined();
    // a bundle the agent holds but this caller does not federate with, another's SVID, nonsense: nothing
    expect(c.get('spiffe://stranger.test')).toBeUndefined();
    expect(c.get(`spiffe://${TD}/c`)).toBeUndefined();
    expect(c.get('')).toBeUndefined();
    expect(c.wildcardNames()).toEqual([`spiffe://${TD}`, `spiffe://${fed}`, `spiffe://${TD}/a`, `spiffe://${TD}/b`]);
    // ALL: the SPIFFE validator, one entry per trust domain, sorted, each with its own bundle
    const all = unpack(c.get('ALL')!.any);
    const vc = all.type.case === 'validationContext' ? all.type.value : undefined;
    expect(vc!.trustedCa).toBeUndefined();
    expect(vc!.customValidatorConfig!.name).toBe('envoy.tls.cert_validator.spiffe');
    const config = anyUnpack(vc!.customValidatorConfig!.typedConfig!, SPIFFECertValidatorConfigSchema)!;
    expect(config.trustDomains.map((t) => t.name)).toEqual([fed, TD]);
  });

  it('a caller without SVIDs has no identity and no default', () => {
    const c = catalogOf(snapshot([]));
    expect(c.hasIdentity).toBe(false);
    expect(c.get('default')).toBeUndefined();
  });
});

describe('StreamSecrets (state of the world)', () => {
  it('versions and nonces per response; ACK and NACK with the same names get nothing; a NACK is reported once; changes are pushed only when they change the secrets', () => {
    const s = new SotwStream(nonce);
    let snap = snapshot([svid('a')]);
    const cat = () => catalogOf(snap);
    const r1 = s.request(sotwReq({ resourceNames: ['default', 'ROOTCA'] }), cat).response!;
    expect(r1.versionInfo).toBe('1');
    expect(r1.typeUrl).toBe(SECRET_TYPE_URL);
    expect(r1.resources.map((r) => unpack(r).name)).toEqual(['default', 'ROOTCA']);
    expect(s.request(sotwReq({ versionInfo: '1', resourceNames: ['ROOTCA', 'default'], responseNonce: r1.nonce }), cat).response).toBeUndefined();
    const nack = sotwReq({ versionInfo: '', resourceNames: ['default', 'ROOTCA'], responseNonce: r1.nonce, errorDetail: { code: 3, message: 'bad' } });
    expect(s.firstNack(nack)).toBe(true);
    expect(s.request(nack, cat).response).toBeUndefined();
    expect(s.firstNack(nack)).toBe(false); // repeated: not reported again
    expect(s.request(nack, cat).response).toBeUndefined();
    expect(s.changed(cat)).toBeUndefined(); // a change elsewhere in the agent: same secrets, nothing
    snap = snapshot([svid('a', 'v2')]);
    const r2 = s.changed(cat)!;
    expect(r2.versionInfo).toBe('2');
    expect(r2.nonce).not.toBe(r1.nonce);
    // stale nonce: ignored even with new names; the current nonce with new names: answered
    expect(s.request(sotwReq({ resourceNames: ['ALL'], responseNonce: r1.nonce }), cat)).toEqual({ stale: true });
    const r3 = s.request(sotwReq({ versionInfo: '2', resourceNames: ['ALL'], responseNonce: r2.nonce }), cat).response!;
    expect(r3.resources.map((r) => unpack(r).name)).toEqual(['ALL']);
  });

  it('refuses names the caller is not entitled to, a foreign type_url and oversized lists, saying nothing of the secrets', () => {
    const cat = () => catalogOf(snapshot([svid('a')]));
    const refused = (req: ReturnType<typeof sotwReq>): ConnectError => {
      try {
        new SotwStream(nonce).request(req, cat);
      } catch (err) {
        return err as ConnectError;
      }
      throw new Error('not refused');
    };
    const e = refused(sotwReq({ resourceNames: ['default', `spiffe://${TD}/b`] }));
    expect(e.code).toBe(Code.InvalidArgument);
    expect(e.rawMessage).toBe(`workload is not authorized for the requested identities ["spiffe://${TD}/b"]`);
    expect(refused(sotwReq({ typeUrl: 'type.googleapis.com/envoy.config.cluster.v3.Cluster', resourceNames: ['default'] })).code).toBe(Code.InvalidArgument);
    expect(refused(sotwReq({ resourceNames: Array.from({ length: MAX_RESOURCE_NAMES + 1 }, (_, i) => `n${i}`) })).rawMessage).toMatch(/too many resource names/);
  });
});

describe('DeltaSecrets (incremental)', () => {
  it('sends only what the client lacks, removes what it may no longer have, reports a name it may not have once', () => {
    const d = new DeltaStream(nonce);
    let snap = snapshot([svid('a'), svid('b')]);
    const cat = () => catalogOf(snap);
    const r1 = d.request(deltaReq({ resourceNamesSubscribe: ['default', `spiffe://${TD}/b`, `spiffe://${TD}/zzz`] }), cat)!;
    expect(r1.resources.map((r) => r.name)).toEqual(['default', `spiffe://${TD}/b`]);
    expect(r1.resources.every((r) => r.version !== '' && unpack(r.resource!).name === r.name)).toBe(true);
    expect(r1.removedResources).toEqual([`spiffe://${TD}/zzz`]);
    expect(r1.systemVersionInfo).toBe('1');
    // ACK, NACK: nothing
    expect(d.request(deltaReq({ responseNonce: r1.nonce }), cat)).toBeUndefined();
    const nack = deltaReq({ responseNonce: r1.nonce, errorDetail: { message: 'no' } });
    expect(d.firstNack(nack)).toBe(true);
    expect(d.request(nack, cat)).toBeUndefined();
    expect(d.firstNack(nack)).toBe(false);
    // a rotation of b only: b alone, and zzz is not reported absent again
    snap = snapshot([svid('a'), svid('b', 'v2')]);
    const r2 = d.changed(cat)!;
    expect(r2.resources.map((r) => r.name)).toEqual([`spiffe://${TD}/b`]);
    expect(r2.removedResources).toEqual([]);
    // b's entry goes away: removed
    snap = snapshot([svid('a')]);
    expect(d.changed(cat)!.removedResources).toEqual([`spiffe://${TD}/b`]);
    expect(d.changed(cat)).toBeUndefined();
    // unsubscribed: forgotten, not reported
    expect(d.request(deltaReq({ resourceNamesUnsubscribe: [`spiffe://${TD}/b`, `spiffe://${TD}/zzz`] }), cat)).toBeUndefined();
    snap = snapshot([svid('a'), svid('b', 'v3')]);
    expect(d.changed(cat)).toBeUndefined();
  });

  it('a first request subscribing to nothing is the wildcard; initial_resource_versions spare a reconnecting client what it holds', () => {
    let snap = snapshot([svid('a')]);
    const cat = () => catalogOf(snap);
    const w = new DeltaStream(nonce);
    const r1 = w.request(deltaReq({}), cat)!;
    expect(r1.resources.map((r) => r.name)).toEqual([`spiffe://${TD}`, `spiffe://${TD}/a`]);
    snap = snapshot([svid('a'), svid('b')]);
    expect(w.changed(cat)!.resources.map((r) => r.name)).toEqual([`spiffe://${TD}/b`]);
    snap = snapshot([svid('b')]);
    expect(w.changed(cat)!.removedResources).toEqual([`spiffe://${TD}/a`]);

    const held = r1.resources.find((r) => r.name === `spiffe://${TD}`)!.version;
    const again = new DeltaStream(nonce);
    const r = again.request(deltaReq({ resourceNamesSubscribe: [`spiffe://${TD}`, 'default'], initialResourceVersions: { [`spiffe://${TD}`]: held, default: 'old' } }), cat)!;
    expect(r.resources.map((x) => x.name)).toEqual(['default']);
  });
});

describe('DeltaSecrets limits', () => {
  it('refuses a client that piles up subscriptions across requests past the cap', () => {
    const cat = () => catalogOf(snapshot([svid('a')]));
    const d = new DeltaStream(nonce);
    d.request(deltaReq({ resourceNamesSubscribe: ['default'] }), cat);
    const batch = (k: number) => Array.from({ length: 400 }, (_, i) => `spiffe://${TD}/made-up-${k}-${i}`);
    d.request(deltaReq({ resourceNamesSubscribe: batch(1) }), cat);
    d.request(deltaReq({ resourceNamesSubscribe: batch(2) }), cat);
    expect(() => d.request(deltaReq({ resourceNamesSubscribe: batch(3) }), cat)).toThrow(/too many resource names/);
  });
});

describe('the request inbox', () => {
  it('stops reading a client that floods requests and reads no answers', async () => {
    let pulled = 0;
    async function* flood(): AsyncGenerator<number> {
      for (let i = 0; i < 10_000; i++) {
        pulled++;
        yield i;
      }
    }
    const inbox = new Inbox(flood(), 16);
    for (let i = 0; i < 50; i++) await new Promise((r) => setImmediate(r));
    expect(pulled).toBeLessThanOrEqual(17);
    expect(inbox.shift()).toBe(0);
    for (let i = 0; i < 50; i++) await new Promise((r) => setImmediate(r));
    expect(pulled).toBeLessThanOrEqual(18);
    inbox.close();
  });
});

