import { create } from '@bufbuild/protobuf';
import { DeltaDiscoveryResponseSchema, ResourceSchema, type DeltaDiscoveryRequest, type DeltaDiscoveryResponse } from '../gen/envoy/service/discovery/v3/discovery_pb.js';
import { checkNameCount, checkTypeUrl } from './sotw.js';
import { SECRET_TYPE_URL, type SecretCatalog } from './secrets.js';
import { XdsStream } from './xds-stream.js';

const WILDCARD = '*';

/**
 * One DeltaSecrets stream (incremental xDS). The client's subscriptions change by
 * resource_names_subscribe / _unsubscribe ("*" is the wildcard; a first request that subscribes to
 * nothing is the legacy wildcard); each resource's version is a digest of its contents, and the
 * stream remembers which version the client holds (seeded from initial_resource_versions on a
 * reconnect), sending only what differs. A resource that goes away, or that was subscribed but the
 * caller may not have, is listed once in removed_resources (how incremental xDS says "does not
 * exist") and never sent. ACKs and NACKs (error_detail) only acknowledge: a NACKed version is not
 * sent again until its contents change.
 */
export class DeltaStream extends XdsStream {
  private first = true;
  private wildcard = false;
  private readonly subscribed = new Set<string>();
  /** name → version the client holds, as far as this stream knows. */
  private readonly held = new Map<string, string>();
  /** Subscribed names already reported absent (reported again only after they have existed). */
  private readonly toldAbsent = new Set<string>();
  private version = 0;

  request(req: DeltaDiscoveryRequest, catalog: () => SecretCatalog): DeltaDiscoveryResponse | undefined {
    checkTypeUrl(req.typeUrl);
    checkNameCount(req.resourceNamesSubscribe.length + req.resourceNamesUnsubscribe.length + Object.keys(req.initialResourceVersions).length);
    const first = this.first;
    if (first) {
      this.first = false;
      if (req.resourceNamesSubscribe.length === 0) this.wildcard = true;
      for (const [name, version] of Object.entries(req.initialResourceVersions)) this.held.set(name, version);
    }
    for (const name of req.resourceNamesSubscribe) {
      if (name === WILDCARD) this.wildcard = true;
      else if (name !== '') {
        this.subscribed.add(name);
        this.toldAbsent.delete(name);
      }
    }
    for (const name of req.resourceNamesUnsubscribe) {
      if (name === WILDCARD) this.wildcard = false;
      else {
        this.subscribed.delete(name);
        this.held.delete(name);
        this.toldAbsent.delete(name);
      }
    }
    checkNameCount(this.subscribed.size);
    const subscriptionChanged = first || req.resourceNamesSubscribe.length > 0 || req.resourceNamesUnsubscribe.length > 0;
    return subscriptionChanged ? this.respond(catalog()) : undefined;
  }

  changed(catalog: () => SecretCatalog): DeltaDiscoveryResponse | undefined {
    return this.first ? undefined : this.respond(catalog());
  }

  private respond(catalog: SecretCatalog): DeltaDiscoveryResponse | undefined {
    const wanted = new Set(this.subscribed);
    if (this.wildcard) for (const name of catalog.wildcardNames()) wanted.add(name);
    const resources = [];
    const removed: string[] = [];
    for (const name of wanted) {
      const secret = catalog.get(name);
      if (secret) {
        this.toldAbsent.delete(name);
        if (this.held.get(name) === secret.digest) continue;
        this.held.set(name, secret.digest);
        resources.push(create(ResourceSchema, { name, version: secret.digest, resource: secret.any }));
      } else if (this.held.delete(name) || (this.subscribed.has(name) && !this.toldAbsent.has(name))) {
        if (this.subscribed.has(name)) this.toldAbsent.add(name);
        removed.push(name);
      }
    }
    // what the client holds but no longer wants or may no longer have (a wildcard identity gone)
    for (const name of [...this.held.keys()]) {
      if (wanted.has(name)) continue;
      this.held.delete(name);
      removed.push(name);
    }
    if (resources.length === 0 && removed.length === 0) return undefined;
    this.version += 1;
    const nonce = this.nextNonce();
    return create(DeltaDiscoveryResponseSchema, { systemVersionInfo: String(this.version), resources, typeUrl: SECRET_TYPE_URL, removedResources: removed, nonce });
  }
}
