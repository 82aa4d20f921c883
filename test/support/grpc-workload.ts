import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { packageRoot } from '../../lib/paths.js';

/**
 * A Workload API client that is not our code: @grpc/grpc-js with @grpc/proto-loader reading our
 * .proto, as a third-party SPIFFE client would. Field names stay snake_case (keepCase).
 */

const require = createRequire(import.meta.url);
export const WORKLOAD_PROTO = join(packageRoot(), 'workload-api/proto/workload.proto');

type Method = (...args: unknown[]) => unknown;
export type GrpcWorkloadClient = grpc.Client & Record<string, Method>;

const proto = grpc.loadPackageDefinition(protoLoader.loadSync(WORKLOAD_PROTO, { keepCase: true, defaults: true })) as unknown as {
  SpiffeWorkloadAPI: new (address: string, creds: grpc.ChannelCredentials) => GrpcWorkloadClient;
};

export { grpc };

export function grpcWorkloadClient(socketPath: string): GrpcWorkloadClient {
  return new proto.SpiffeWorkloadAPI(`unix://${socketPath}`, grpc.credentials.createInsecure());
}

export function securityHeader(): grpc.Metadata {
  const md = new grpc.Metadata();
  md.set('workload.spiffe.io', 'true');
  return md;
}

export interface X509SvidWire {
  spiffe_id: string;
  x509_svid: Buffer;
  x509_svid_key: Buffer;
  bundle: Buffer;
  hint: string;
}

/** The first message of a server stream (FetchX509SVID, FetchJWTBundles, …); the call is then cancelled. */
export function firstMessage<T>(client: GrpcWorkloadClient, method: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const call = client[method]!({}, securityHeader()) as grpc.ClientReadableStream<T>;
    call.once('data', (m: T) => {
      resolve(m);
      call.cancel();
    });
    call.once('error', (e: grpc.ServiceError) => (e.code === grpc.status.CANCELLED ? undefined : reject(e)));
  });
}

export function unary<T>(client: GrpcWorkloadClient, method: string, request: object): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    client[method]!(request, securityHeader(), (err: grpc.ServiceError | null, res: T) => (err ? reject(err) : resolve(res)));
  });
}

/**
 * Runs a grpc-js FetchX509SVID call in a child process under another uid (root only) and returns
 * what it printed: `DATA <ids,…>` or `ERR <code>`.
 */
export function fetchAsUid(socketPath: string, uid: number): Promise<string> {
  const script = `
    const grpc=require(${JSON.stringify(require.resolve('@grpc/grpc-js'))});
    const pl=require(${JSON.stringify(require.resolve('@grpc/proto-loader'))});
    const p=grpc.loadPackageDefinition(pl.loadSync(${JSON.stringify(WORKLOAD_PROTO)},{keepCase:true}));
    const c=new p.SpiffeWorkloadAPI(${JSON.stringify(`unix://${socketPath}`)},grpc.credentials.createInsecure());
    const md=new grpc.Metadata();md.set('workload.spiffe.io','true');
    const call=c.FetchX509SVID({},md);
    call.on('data',m=>{console.log('DATA '+m.svids.map(s=>s.spiffe_id).join());process.exit(0)});
    call.on('error',e=>{console.log('ERR '+e.code);process.exit(0)});`;
  return new Promise<string>((resolve) => {
    const child = spawn('setpriv', [`--reuid=${uid}`, `--regid=${uid}`, '--clear-groups', process.execPath, '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    let text = '';
    child.stdout.on('data', (d: Buffer) => (text += d.toString()));
    child.on('exit', () => resolve(text.trim()));
  });
}
