import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

/**
 * An Envoy SDS client that is not our code: @grpc/grpc-js with @grpc/proto-loader reading Envoy's
 * official API protos as the gRPC project vendors them in @grpc/grpc-js-xds (envoy-api, xds,
 * googleapis, protoc-gen-validate). Any-typed resources are decoded by those protos (`json`), so a
 * wrong type URL, package or field number in our trimmed protos shows up as a decoding difference.
 */

const require = createRequire(import.meta.url);
const deps = join(dirname(require.resolve('@grpc/grpc-js-xds/package.json')), 'deps');

export const ENVOY_PROTO_DIRS = ['envoy-api', 'xds', 'googleapis', 'protoc-gen-validate'].map((d) => join(deps, d));
export const SECRET_TYPE = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret';
export const SPIFFE_VALIDATOR_TYPE = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.SPIFFECertValidatorConfig';

const definition = protoLoader.loadSync(
  ['envoy/service/secret/v3/sds.proto', 'envoy/extensions/transport_sockets/tls/v3/secret.proto', 'envoy/extensions/transport_sockets/tls/v3/tls_spiffe_validator_config.proto'],
  { keepCase: true, json: true, includeDirs: ENVOY_PROTO_DIRS },
);
const envoy = (grpc.loadPackageDefinition(definition) as unknown as {
  envoy: { service: { secret: { v3: { SecretDiscoveryService: new (address: string, creds: grpc.ChannelCredentials) => SdsClient } } } };
}).envoy;

export { grpc };

export interface DataSourceWire {
  inline_bytes?: Buffer;
  inline_string?: string;
  filename?: string;
}

/** An envoy.extensions.transport_sockets.tls.v3.Secret as the official protos decode it from a resource's Any. */
export interface SecretWire {
  '@type': string;
  name: string;
  tls_certificate?: { certificate_chain?: DataSourceWire; private_key?: DataSourceWire };
  validation_context?: {
    trusted_ca?: DataSourceWire;
    custom_validator_config?: { name: string; typed_config?: { '@type': string; trust_domains?: { name: string; trust_bundle?: DataSourceWire }[] } };
  };
}

export interface DiscoveryResponseWire {
  version_info: string;
  resources: SecretWire[];
  type_url: string;
  nonce: string;
}

export interface DeltaResponseWire {
  system_version_info: string;
  resources: { name: string; version: string; resource: SecretWire }[];
  removed_resources: string[];
  type_url: string;
  nonce: string;
}

export interface DiscoveryRequestWire {
  version_info?: string;
  node?: { id: string; cluster?: string };
  resource_names?: string[];
  type_url?: string;
  response_nonce?: string;
  error_detail?: { code: number; message: string };
}

export interface DeltaRequestWire {
  node?: { id: string };
  type_url?: string;
  resource_names_subscribe?: string[];
  resource_names_unsubscribe?: string[];
  initial_resource_versions?: Record<string, string>;
  response_nonce?: string;
  error_detail?: { code: number; message: string };
}

export type SdsClient = grpc.Client & {
  StreamSecrets(): grpc.ClientDuplexStream<DiscoveryRequestWire, DiscoveryResponseWire>;
  DeltaSecrets(): grpc.ClientDuplexStream<DeltaRequestWire, DeltaResponseWire>;
  FetchSecrets(req: DiscoveryRequestWire, cb: (err: grpc.ServiceError | null, res: DiscoveryResponseWire) => void): void;
};

export function sdsClient(socketPath: string): SdsClient {
  return new envoy.service.secret.v3.SecretDiscoveryService(`unix://${socketPath}`, grpc.credentials.createInsecure());
}

export function fetchSecrets(client: SdsClient, req: DiscoveryRequestWire): Promise<DiscoveryResponseWire> {
  return new Promise((resolve, reject) => client.FetchSecrets(req, (err, res) => (err ? reject(err) : resolve(res))));
}

/** A duplex stream's messages as they arrive, with a condition wait over them (no fixed sleeps). */
export class Recorder<T> {
  readonly messages: T[] = [];
  error: grpc.ServiceError | undefined;
  ended = false;
  private readonly waiters = new Set<() => void>();

  constructor(stream: grpc.ClientReadableStream<T>) {
    stream.on('data', (m: T) => {
      this.messages.push(m);
      this.waiters.forEach((w) => w());
    });
    stream.on('error', (e: grpc.ServiceError) => {
      this.error = e;
      this.waiters.forEach((w) => w());
    });
    stream.on('end', () => {
      this.ended = true;
      this.waiters.forEach((w) => w());
    });
  }

  /** Resolves with the first message at index ≥ `from` that satisfies `test`. */
  next(from: number, test: (m: T) => boolean = () => true, timeoutMs = 30_000): Promise<T> {
    return new Promise((resolve, reject) => {
      const check = (): void => {
        const hit = this.messages.slice(from).find(test);
        if (hit) done(() => resolve(hit));
        else if (this.error) done(() => reject(this.error));
        else if (this.ended) done(() => reject(new Error('stream ended')));
      };
      const timer = setTimeout(() => done(() => reject(new Error(`no matching message within ${timeoutMs} ms (have ${this.messages.length})`))), timeoutMs);
      const done = (f: () => void): void => {
        clearTimeout(timer);
        this.waiters.delete(check);
        f();
      };
      this.waiters.add(check);
      check();
    });
  }

  /** Resolves with the stream's error (rejects if a message or a clean end comes instead of one within the time). */
  failure(timeoutMs = 30_000): Promise<grpc.ServiceError> {
    return new Promise((resolve, reject) => {
      const check = (): void => {
        if (this.error) done(() => resolve(this.error!));
        else if (this.ended) done(() => reject(new Error('stream ended without an error')));
      };
      const timer = setTimeout(() => done(() => reject(new Error('no error within the time'))), timeoutMs);
      const done = (f: () => void): void => {
        clearTimeout(timer);
        this.waiters.delete(check);
        f();
      };
      this.waiters.add(check);
      check();
    });
  }
}

export const pemOf = (ds: DataSourceWire | undefined): string => (ds?.inline_bytes ? Buffer.from(ds.inline_bytes).toString('utf8') : (ds?.inline_string ?? ''));
