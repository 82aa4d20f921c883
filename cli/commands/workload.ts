import { spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { join, resolve } from 'node:path';
import { makeDirs, writeFileAtomic } from '../../lib/fs.js';
import { derToPem } from '../../spiffe/bundle/bundle.js';
import { WorkloadApiClient, WorkloadApiError, x509Pem, type X509Context } from '../../workload-api/client.js';
import { UsageError, type Parsed } from '../flags.js';
import type { JWT_FETCH_FLAGS, JWT_VALIDATE_FLAGS, SVID_FETCH_FLAGS, SVID_WATCH_FLAGS } from '../specs/svid.js';
import { dataDirOf, recordedEndpoints } from '../client.js';
import { writeFederatedBundles } from '../federated-files.js';
import { printResult, say, table } from '../output.js';
import { untilSignal } from './agent.js';

/**
 * --socket, then SPIFFE_ENDPOINT_SOCKET (as every SPIFFE client does; the flag table applies it), then
 * what `cairn up` wrote.
 */
export function workloadSocketOf(flag: string | undefined, dataDirFlag: string | undefined): string {
  // A URI (any scheme, so a tcp:// address gets the client's clear refusal) or a plain socket path.
  if (flag) return /^[a-z][a-z0-9+.-]*:/i.test(flag) ? flag : `unix://${resolve(flag)}`;
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
 * Writes svid.pem, svid.key, bundle.pem and crl.pem (plus federated/<td>.pem per foreign trust domain), each
 * atomically. The key goes first and the certificate last, so a reader that keys off svid.pem's change
 * never pairs a new certificate with an old key.
 */
function writeFiles(dir: string, ctx: X509Context, spiffeId: string | undefined): string {
  const svid = pick(ctx, spiffeId);
  const pem = x509Pem(svid);
  makeDirs(dir, 0o755);
  writeFileAtomic(join(dir, 'bundle.pem'), pem.bundle, 0o644);
  // The CRLs the agent carries (every published CA's), for ssl_crl / crl-file next to bundle.pem.
  if (ctx.crls.length > 0) writeFileAtomic(join(dir, 'crl.pem'), ctx.crls.map((c) => derToPem(c, 'X509 CRL')).join(''), 0o644);
  // A foreign bundle no longer sent is unloaded (Workload API: a missing bundle means drop it).
  writeFederatedBundles(dir, ctx.federatedBundles);
  writeFileAtomic(join(dir, 'svid.key'), pem.privateKey, 0o600);
  writeFileAtomic(join(dir, 'svid.pem'), pem.certificates, 0o644);
  return svid.spiffeId;
}

function summary(ctx: X509Context) {
  return ctx.svids.map((s) => {
    const leaf = new X509Certificate(s.chain[0]!);
    // Lowercase hex, as the CA's API, inventory and logs print serials (Node gives uppercase).
    return { spiffeId: s.spiffeId, hint: s.hint, serial: leaf.serialNumber.toLowerCase(), expiresAt: new Date(leaf.validTo).toISOString() };
  });
}

function summaryTable(svids: ReturnType<typeof summary>): string {
  return table([['SPIFFE ID', 'SERIAL', 'EXPIRES', 'HINT'], ...svids.map((s) => [s.spiffeId, s.serial, s.expiresAt, s.hint || '-'])]);
}

/** A summary by default; the files with --write; the PEMs, private key included, only with --print-key. */
export async function svidFetch({ values }: Parsed<typeof SVID_FETCH_FLAGS>): Promise<void> {
  const client = new WorkloadApiClient(workloadSocketOf(values.socket, values['data-dir']));
  try {
    const ctx = await client.fetchX509Context(AbortSignal.timeout(30_000));
    const chosen = pick(ctx, values['spiffe-id']);
    const svids = summary(ctx).filter((s) => !values['spiffe-id'] || s.spiffeId === chosen.spiffeId);
    if (values.write) {
      const id = writeFiles(values.write, ctx, values['spiffe-id']);
      say(`wrote svid.pem, svid.key and bundle.pem for ${id} to ${values.write}`);
    }
    if (values['print-key']) {
      const pem = x509Pem(chosen);
      return printResult(values.json, { svids, certificates: pem.certificates, privateKey: pem.privateKey, bundle: pem.bundle }, () => pem.certificates + pem.privateKey + pem.bundle);
    }
    if (values.write) return printResult(values.json, { svids }, () => chosen.spiffeId);
    if (!values.json) say('(no key printed: --write DIR writes svid.pem, svid.key and bundle.pem; --print-key prints the PEMs, private key included)');
    printResult(values.json, { svids }, () => summaryTable(svids));
  } finally {
    client.close();
  }
}

export async function svidWatch({ values }: Parsed<typeof SVID_WATCH_FLAGS>): Promise<void> {
  const client = new WorkloadApiClient(workloadSocketOf(values.socket, values['data-dir']));
  try {
    const stop = new AbortController();
    void untilSignal().then(() => stop.abort());
    for await (const ctx of client.watchX509Context({
      signal: stop.signal,
      onRetry: (err, ms) => say(`workload API: ${err.code}: ${err.message}; retrying in ${ms} ms`),
    })) {
      const id = writeFiles(values.write, ctx, values['spiffe-id']);
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

export async function jwtFetch({ values }: Parsed<typeof JWT_FETCH_FLAGS>): Promise<void> {
  const client = new WorkloadApiClient(workloadSocketOf(values.socket, values['data-dir']));
  try {
    const svids = await client.fetchJwtSvids(values.audience, values['spiffe-id']);
    printResult(values.json, svids, () => svids.map((s) => s.token).join('\n'));
  } finally {
    client.close();
  }
}

export async function jwtValidate({ values, positionals }: Parsed<typeof JWT_VALIDATE_FLAGS>): Promise<void> {
  const client = new WorkloadApiClient(workloadSocketOf(values.socket, values['data-dir']));
  try {
    const res = await client.validateJwtSvid(positionals[0]!, values.audience);
    printResult(values.json, res, () => `${res.spiffeId}\n${JSON.stringify(res.claims, null, 2)}`);
  } finally {
    client.close();
  }
}
