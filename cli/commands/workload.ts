import { spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { join, resolve } from 'node:path';
import { makeDirs, writeFileAtomic } from '../../lib/fs.js';
import { derToPem } from '../../spiffe/bundle/bundle.js';
import { WorkloadApiClient, WorkloadApiError, x509Pem, type X509Context } from '../../workload-api/client.js';
import { parse, UsageError } from '../args.js';
import { dataDirOf, recordedEndpoints } from '../client.js';
import { printResult, say } from '../output.js';
import { untilSignal } from './agent.js';

export const WORKLOAD_USAGE = `cairn svid fetch [--socket unix:///PATH] [--spiffe-id ID] [--write DIR]     (from the Workload API, like spire-agent api fetch)
cairn svid watch [--socket unix:///PATH] [--spiffe-id ID] --write DIR [--exec CMD]   (rewrite the files on every rotation)
cairn jwt fetch [--socket unix:///PATH] --audience AUD [--audience AUD …] [--spiffe-id ID]
cairn jwt validate [--socket unix:///PATH] --audience AUD TOKEN
The socket comes from --socket, else SPIFFE_ENDPOINT_SOCKET, else <data-dir>/endpoints.json (written by cairn up).`;

const SOCKET_OPTIONS = { socket: { type: 'string' }, 'spiffe-id': { type: 'string' } } as const;

/** --socket, then SPIFFE_ENDPOINT_SOCKET (as every SPIFFE client does), then what `cairn up` wrote. */
export function workloadSocketOf(flag: string | undefined, dataDirFlag: string | undefined): string {
  // A URI (any scheme, so a tcp:// address gets the client's clear refusal) or a plain socket path.
  if (flag) return /^[a-z][a-z0-9+.-]*:/i.test(flag) ? flag : `unix://${resolve(flag)}`;
  if (process.env.SPIFFE_ENDPOINT_SOCKET) return process.env.SPIFFE_ENDPOINT_SOCKET;
  const socket = recordedEndpoints(dataDirOf(dataDirFlag)).socket;
  if (socket) return `unix://${socket}`;
  throw new UsageError('no Workload API socket: pass --socket unix:///path, set SPIFFE_ENDPOINT_SOCKET, or run where cairn up wrote endpoints.json');
}

function pick(ctx: X509Context, spiffeId: string | undefined) {
  const svid = spiffeId ? ctx.svids.find((s) => s.spiffeId === spiffeId) : ctx.svids[0];
  if (!svid) throw new WorkloadApiError('permission_denied', `the Workload API holds no SVID for ${spiffeId ?? 'this caller'}`, false);
  return svid;
}

/**
 * Writes svid.pem, svid.key and bundle.pem (plus federated/<td>.pem per foreign trust domain), each
 * atomically. The key goes first and the certificate last, so a reader that keys off svid.pem's change
 * never pairs a new certificate with an old key.
 */
function writeFiles(dir: string, ctx: X509Context, spiffeId: string | undefined): string {
  const svid = pick(ctx, spiffeId);
  const pem = x509Pem(svid);
  makeDirs(dir, 0o755);
  writeFileAtomic(join(dir, 'bundle.pem'), pem.bundle, 0o644);
  for (const [td, certs] of ctx.federatedBundles) {
    makeDirs(join(dir, 'federated'), 0o755);
    writeFileAtomic(join(dir, 'federated', `${td.replace(/^spiffe:\/\//, '')}.pem`), certs.map((c) => derToPem(c)).join(''), 0o644);
  }
  writeFileAtomic(join(dir, 'svid.key'), pem.privateKey, 0o600);
  writeFileAtomic(join(dir, 'svid.pem'), pem.certificates, 0o644);
  return svid.spiffeId;
}

function summary(ctx: X509Context) {
  return ctx.svids.map((s) => {
    const leaf = new X509Certificate(s.chain[0]!);
    return { spiffeId: s.spiffeId, hint: s.hint, serial: leaf.serialNumber, expiresAt: new Date(leaf.validTo).toISOString() };
  });
}

export async function svidWorkloadCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parse(argv, { ...SOCKET_OPTIONS, write: { type: 'string' }, exec: { type: 'string' } });
  const verb = positionals[0];
  if (verb !== 'fetch' && verb !== 'watch') throw new UsageError(WORKLOAD_USAGE);
  if (verb === 'watch' && !values.write) throw new UsageError('svid watch needs --write DIR');
  const client = new WorkloadApiClient(workloadSocketOf(values.socket, values['data-dir']));
  try {
    if (verb === 'fetch') {
      const ctx = await client.fetchX509Context(AbortSignal.timeout(30_000));
      if (values.write) {
        const id = writeFiles(values.write, ctx, values['spiffe-id']);
        say(`wrote svid.pem, svid.key and bundle.pem for ${id} to ${values.write}`);
        return printResult(values.json, summary(ctx), () => id);
      }
      const svid = pick(ctx, values['spiffe-id']);
      const pem = x509Pem(svid);
      return printResult(values.json, { svids: summary(ctx), certificates: pem.certificates, privateKey: pem.privateKey, bundle: pem.bundle }, () =>
        pem.certificates + pem.privateKey + pem.bundle,
      );
    }
    const stop = new AbortController();
    void untilSignal().then(() => stop.abort());
    for await (const ctx of client.watchX509Context({
      signal: stop.signal,
      onRetry: (err, ms) => say(`workload API: ${err.code}: ${err.message}; retrying in ${ms} ms`),
    })) {
      const id = writeFiles(values.write!, ctx, values['spiffe-id']);
      const s = summary(ctx).find((x) => x.spiffeId === id)!;
      say(`wrote ${id} (serial ${s.serial}, expires ${s.expiresAt}) to ${values.write}`);
      if (values.exec) {
        const r = spawnSync('/bin/sh', ['-c', values.exec], { stdio: ['ignore', 'inherit', 'inherit'] });
        if (r.status !== 0) say(`--exec command exited with ${r.status ?? r.signal}`);
      }
    }
  } finally {
    client.close();
  }
}

export async function jwtWorkloadCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parse(argv, { ...SOCKET_OPTIONS, audience: { type: 'string', multiple: true } });
  const [verb, token] = positionals;
  if ((verb !== 'fetch' && verb !== 'validate') || !values.audience?.length) throw new UsageError(WORKLOAD_USAGE);
  const client = new WorkloadApiClient(workloadSocketOf(values.socket, values['data-dir']));
  try {
    if (verb === 'fetch') {
      const svids = await client.fetchJwtSvids(values.audience, values['spiffe-id']);
      return printResult(values.json, svids, () => svids.map((s) => s.token).join('\n'));
    }
    if (!token || values.audience.length !== 1) throw new UsageError('jwt validate needs exactly one --audience and the TOKEN');
    const res = await client.validateJwtSvid(token, values.audience[0]!);
    printResult(values.json, res, () => `${res.spiffeId}\n${JSON.stringify(res.claims, null, 2)}`);
  } finally {
    client.close();
  }
}
