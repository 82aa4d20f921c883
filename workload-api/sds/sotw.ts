import { create } from '@bufbuild/protobuf';
import { Code, ConnectError } from '@connectrpc/connect';
import { DiscoveryResponseSchema, type DiscoveryRequest, type DiscoveryResponse } from '../gen/envoy/service/discovery/v3/discovery_pb.js';
import { fingerprint, SECRET_TYPE_URL, type PackedSecret, type SecretCatalog } from './secrets.js';
import { XdsStream } from './xds-stream.js';

/** More names than any sidecar asks for on one stream; a longer list is refused before any lookup. */
export const MAX_RESOURCE_NAMES = 1000;

export function checkTypeUrl(typeUrl: string): void {
  if (typeUrl !== '' && typeUrl !== SECRET_TYPE_URL) throw new ConnectError(`unsupported type_url "${typeUrl.slice(0, 200)}": this service serves ${SECRET_TYPE_URL}`, Code.InvalidArgument);
}

export function checkNameCount(count: number): void {
  if (count > MAX_RESOURCE_NAMES) throw new ConnectError(`too many resource names (${count}; at most ${MAX_RESOURCE_NAMES})`, Code.InvalidArgument);
}

/**
 * The secrets for a state-of-the-world request, in the order asked (an empty list: everything the
 * caller may have). As SPIRE's agent does, a name the caller is not entitled to fails the request
 * with InvalidArgument naming it; nothing else about it is said.
 */
export function resolveNames(catalog: SecretCatalog, names: readonly string[]): PackedSecret[] {
  const wanted = names.length === 0 ? catalog.wildcardNames() : names;
  const out: PackedSecret[] = [];
  const missing: string[] = [];
  for (const name of wanted) {
    const secret = catalog.get(name);
    if (secret) out.push(secret);
    else missing.push(name);
  }
  if (missing.length > 0) {
    const shown = [...missing].sort().slice(0, 10).map((n) => JSON.stringify(n.slice(0, 300)));
    throw new ConnectError(`workload is not authorized for the requested identities [${shown.join(' ')}${missing.length > 10 ? ' …' : ''}]`, Code.InvalidArgument);
  }
  return out;
}

export function uniqueNames(names: readonly string[]): string[] {
  return [...new Set(names.filter((n) => n !== ''))];
}

function sameSet(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  const set = new Set(a);
  return b.every((n) => set.has(n));
}

/** What the handler learns from one request besides the answer. */
export interface RequestOutcome {
  readonly response?: DiscoveryResponse | undefined;
  /** The request carried a nonce other than the last one sent: ignored, as the xDS protocol asks. */
  readonly stale?: boolean;
}

/**
 * One StreamSecrets stream (state-of-the-world xDS). Each response gets a new version_info (a
 * counter) and a fresh nonce. A request answering the last nonce is an ACK (its version_info is the
 * one sent) or a NACK (error_detail set, the version it still runs): either way, if the names are
 * the same nothing is sent, so a NACKed secret is not pushed again until it actually changes. A
 * request with new names is answered at once; a request with a stale nonce is ignored. A cache
 * change is pushed only when the secrets for the subscribed names differ from those last sent.
 */
export class SotwStream extends XdsStream {
  private subscribed: string[] | undefined;
  private lastSent: string | undefined;
  private version = 0;

  /** The version_info of the last response sent ('' before the first). */
  get currentVersion(): string {
    return this.version === 0 ? '' : String(this.version);
  }

  request(req: DiscoveryRequest, catalog: () => SecretCatalog): RequestOutcome {
    checkTypeUrl(req.typeUrl);
    checkNameCount(req.resourceNames.length);
    if (this.lastNonce !== undefined && req.responseNonce !== this.lastNonce) return { stale: true };
    const names = uniqueNames(req.resourceNames);
    const changed = this.subscribed === undefined || !sameSet(this.subscribed, names);
    this.subscribed = names;
    if (!changed) return {};
    return { response: this.respond(catalog(), true) };
  }

  /** The cache changed: a response when the subscribed secrets differ from the last sent. */
  changed(catalog: () => SecretCatalog): DiscoveryResponse | undefined {
    if (this.subscribed === undefined) return undefined;
    return this.respond(catalog(), false);
  }

  private respond(catalog: SecretCatalog, force: boolean): DiscoveryResponse | undefined {
    const secrets = resolveNames(catalog, this.subscribed!);
    const print = fingerprint(secrets);
    if (!force && print === this.lastSent) return undefined;
    this.lastSent = print;
    this.version += 1;
    const nonce = this.nextNonce();
    return create(DiscoveryResponseSchema, { versionInfo: String(this.version), resources: secrets.map((s) => s.any), typeUrl: SECRET_TYPE_URL, nonce });
  }
}
