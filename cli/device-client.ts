import { X509Certificate } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { AgentPaths, type DeviceSvidMessage } from '../contract/agent-api.js';
import { parseBootstrapToken } from '../contract/bootstrap-token.js';
import { writeFileAtomic } from '../lib/fs.js';
import { generateKeyAndCsr } from '../lib/pkcs10.js';
import { fetchPinnedAuthority, requestJson } from '../lib/tls-client.js';
import { derToPem } from '../spiffe/bundle/bundle.js';
import { CliError } from './client.js';
import { writeFederatedBundles } from './federated-files.js';

/** What a device keeps beside its SVID files so it can renew: where the CA is and whom to trust. */
interface DeviceState {
  readonly caUrl: string;
  readonly authorityPem: string;
  readonly spiffeId: string;
}

export interface DeviceSvid {
  readonly spiffeId: string;
  readonly expiresAt: Date;
  readonly serial: string;
  /** The foreign trust domains whose bundles were written to federated/<td>.pem (absent: a CA that sends none). */
  readonly federatedTrustDomains?: readonly string[];
}

const STATE = 'cairn-device.json';

function writeSvid(dir: string, svid: DeviceSvidMessage, keyPem: string): DeviceSvid {
  // Key first: a reader that sees the new certificate will find its key already in place.
  writeFileAtomic(join(dir, 'svid.key'), keyPem, 0o600);
  // federated/<td>.pem as `cairn svid watch --write` writes them; a CA of an earlier release sends
  // no federatedBundles, and then the files are left as they are rather than removed.
  const federated = svid.federatedBundles && Object.entries(svid.federatedBundles).map(([td, ders]) => [td, ders.map((d) => Buffer.from(d, 'base64'))] as const);
  if (federated) writeFederatedBundles(dir, federated);
  writeFileAtomic(join(dir, 'svid.pem'), svid.chain.map((c) => derToPem(Buffer.from(c, 'base64'))).join(''), 0o644);
  writeFileAtomic(join(dir, 'bundle.pem'), svid.bundle.map((c) => derToPem(Buffer.from(c, 'base64'))).join(''), 0o644);
  return {
    spiffeId: svid.spiffeId, expiresAt: new Date(svid.expiresAt), serial: svid.serial,
    ...(federated ? { federatedTrustDomains: federated.map(([td]) => td).sort() } : {}),
  };
}

function failure(status: number, body: unknown): CliError {
  const e = (body ?? {}) as { code?: string; message?: string };
  return new CliError(e.code ?? `http_${status}`, e.message ?? `the CA answered ${status}`, status);
}

/** Redeems a workload credential once: pinned first contact, CSR from a key made here, files written atomically. */
export async function bootstrapDevice(tokenText: string, dir: string): Promise<DeviceSvid> {
  let token;
  try {
    token = parseBootstrapToken(tokenText);
  } catch (err) {
    throw new CliError('invalid_token', (err as Error).message);
  }
  if (token.claims.kind !== 'workload') throw new CliError('invalid_token', 'this is a join token for an agent; devices need a workload credential (cairn token create --spiffe-id …)');
  const authorityPem = await fetchPinnedAuthority(token.claims.url, token.claims.pin);
  const key = generateKeyAndCsr('ec-p256');
  const res = await requestJson<DeviceSvidMessage>('POST', token.claims.url + AgentPaths.deviceRedeem, { token: tokenText.trim(), csr: key.csr.toString('base64') }, { ca: authorityPem });
  if (res.status !== 201) throw failure(res.status, res.body);
  const state: DeviceState = { caUrl: token.claims.url, authorityPem, spiffeId: res.body.spiffeId };
  writeFileAtomic(join(dir, STATE), JSON.stringify(state, null, 2) + '\n', 0o600);
  return writeSvid(dir, res.body, key.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString());
}

/** Renews over mTLS with the SVID on disk; the new key is generated here and never leaves. */
export async function renewDevice(dir: string): Promise<DeviceSvid> {
  const statePath = join(dir, STATE);
  if (!existsSync(statePath)) throw new CliError('not_bootstrapped', `${dir} holds no device state; run cairn bootstrap first`);
  const state = JSON.parse(readFileSync(statePath, 'utf8')) as DeviceState;
  const key = generateKeyAndCsr('ec-p256');
  const res = await requestJson<DeviceSvidMessage>('POST', state.caUrl + AgentPaths.deviceRenew, { csr: key.csr.toString('base64') }, {
    ca: state.authorityPem,
    cert: readFileSync(join(dir, 'svid.pem'), 'utf8'),
    key: readFileSync(join(dir, 'svid.key'), 'utf8'),
  });
  if (res.status !== 201) throw failure(res.status, res.body);
  return writeSvid(dir, res.body, key.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString());
}

/** When to renew the SVID on disk: about half its lifetime, with ±10% jitter so a fleet spreads out. */
export function nextRenewal(dir: string, jitter: number = Math.random()): Date {
  const cert = new X509Certificate(readFileSync(join(dir, 'svid.pem')));
  const from = new Date(cert.validFrom).getTime();
  const to = new Date(cert.validTo).getTime();
  const half = (to - from) / 2;
  return new Date(from + half + (jitter * 2 - 1) * 0.1 * half);
}

export function expiryOf(dir: string): Date {
  return new Date(new X509Certificate(readFileSync(join(dir, 'svid.pem'))).validTo);
}
