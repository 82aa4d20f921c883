import { setTimeout as sleep } from 'node:timers/promises';
import type { BanView, EntryView, NodeView } from '../../contract/admin-api.js';
import { parseDuration, formatDuration } from '../../lib/duration.js';
import { parse, UsageError } from '../args.js';
import { adminClientFor, CliError } from '../client.js';
import { bootstrapDevice, expiryOf, nextRenewal, renewDevice } from '../device-client.js';
import { printResult, say, table } from '../output.js';

export const ENROLLMENT_USAGE = `cairn token create --trust-domain TD [--ttl 10m] [--agent-id ID | --spiffe-id ID] [--selector join_token:LABEL …]
cairn entry create --spiffe-id ID --parent-id ID --selector type:value … [--x509-svid-ttl D] [--jwt-svid-ttl D] [--dns NAME …]
                   [--hint H] [--admin] [--admin-role admin|operator|viewer] [--federates-with TD …] [--expires-at ISO] [--allow-unknown-selector-type]
                   (--admin: the entry's SVIDs are admin credentials over mTLS, role --admin-role, default admin;
                    update … --no-admin takes it away)
cairn entry list [--trust-domain TD] [--parent-id ID] [--spiffe-id ID] [--selector type:value …]
cairn entry show ID | update ID [fields as for create] | delete ID
cairn agent list [--trust-domain TD] | evict ID
cairn agent ban ID [--reason TEXT]              (by SPIFFE ID; the node need not be attested; evict keeps the ban)
cairn agent ban --trust-domain TD (--fingerprint SHA1 | --node-uid UID) [--reason TEXT]
                                                (an x509pop device certificate / a Kubernetes node)
cairn agent unban ID | unban --trust-domain TD (--fingerprint SHA1 | --node-uid UID)
cairn agent bans [--trust-domain TD]            (the deny-list)
cairn bootstrap --token TOKEN --write DIR       (agentless device: redeem a workload credential)
cairn renew --dir DIR [--watch] [--exec CMD]    (renew over mTLS; --watch keeps renewing at half-life)`;

const ENTRY_OPTIONS = {
  'spiffe-id': { type: 'string' },
  'parent-id': { type: 'string' },
  selector: { type: 'string', multiple: true },
  'x509-svid-ttl': { type: 'string' },
  'jwt-svid-ttl': { type: 'string' },
  dns: { type: 'string', multiple: true },
  hint: { type: 'string' },
  admin: { type: 'boolean' },
  'no-admin': { type: 'boolean' },
  'admin-role': { type: 'string' },
  'federates-with': { type: 'string', multiple: true },
  'expires-at': { type: 'string' },
  'allow-unknown-selector-type': { type: 'boolean' },
  'trust-domain': { type: 'string' },
  'page-size': { type: 'string' },
  'page-token': { type: 'string' },
} as const;

export async function tokenCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parse(argv, {
    'trust-domain': { type: 'string' },
    ttl: { type: 'string' },
    'agent-id': { type: 'string' },
    'spiffe-id': { type: 'string' },
    selector: { type: 'string', multiple: true },
    'allow-unknown-selector-type': { type: 'boolean' },
  });
  if (positionals[0] !== 'create' || !values['trust-domain']) throw new UsageError(ENROLLMENT_USAGE);
  const res = await adminClientFor(values).request<{ id: string; kind: string; token: string; spiffeId: string; expiresAt: string }>('POST', '/v1/tokens', {
    trustDomain: values['trust-domain'],
    ...(values.ttl ? { ttlSeconds: parseDuration(values.ttl) } : {}),
    ...(values['agent-id'] ? { agentId: values['agent-id'] } : {}),
    ...(values['spiffe-id'] ? { spiffeId: values['spiffe-id'] } : {}),
    ...(values.selector ? { selectors: values.selector } : {}),
    ...(values['allow-unknown-selector-type'] ? { allowUnknownSelectorTypes: true } : {}),
  });
  say(`${res.kind === 'join' ? 'join token' : 'workload credential'} for ${res.spiffeId}, single use, expires ${res.expiresAt}`);
  printResult(values.json, res, () => res.token);
}

function describeEntry(e: EntryView): string {
  return table([
    ['id', e.id],
    ['spiffe id', e.spiffeId],
    ['parent id', e.parentId],
    ['selectors', e.selectors.join(' ')],
    ['x509-svid ttl', e.x509SvidTtl === null ? 'trust domain default' : formatDuration(e.x509SvidTtl)],
    ['jwt-svid ttl', e.jwtSvidTtl === null ? 'trust domain default' : formatDuration(e.jwtSvidTtl)],
    ['dns names', e.dnsNames.join(' ') || '-'],
    ['hint', e.hint ?? '-'],
    ['admin', e.admin ? `yes, role ${e.adminRole}` : 'no'],
    ['federates with', e.federatesWith.join(' ') || '-'],
    ['expires', e.expiresAt ?? 'never'],
    ['revision', String(e.revision)],
  ]);
}

export async function entryCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parse(argv, ENTRY_OPTIONS);
  const [verb, id] = positionals;
  if (values.admin && values['no-admin']) throw new UsageError('--admin and --no-admin contradict each other');
  if (values['no-admin'] && values['admin-role'] !== undefined) throw new UsageError('--admin-role is for admin entries: drop it or --no-admin');
  if (values['admin-role'] !== undefined && !['admin', 'operator', 'viewer'].includes(values['admin-role'])) {
    throw new UsageError(`--admin-role must be admin, operator or viewer, got "${values['admin-role']}"`);
  }
  const client = adminClientFor(values);
  const fields = {
    ...(values['spiffe-id'] ? { spiffeId: values['spiffe-id'] } : {}),
    ...(values['parent-id'] ? { parentId: values['parent-id'] } : {}),
    ...(values.selector ? { selectors: values.selector } : {}),
    ...(values['x509-svid-ttl'] ? { x509SvidTtl: parseDuration(values['x509-svid-ttl']) } : {}),
    ...(values['jwt-svid-ttl'] ? { jwtSvidTtl: parseDuration(values['jwt-svid-ttl']) } : {}),
    ...(values.dns ? { dnsNames: values.dns } : {}),
    ...(values.hint !== undefined ? { hint: values.hint } : {}),
    ...(values.admin !== undefined ? { admin: values.admin } : {}),
    ...(values['no-admin'] ? { admin: false } : {}),
    ...(values['admin-role'] !== undefined ? { adminRole: values['admin-role'] } : {}),
    ...(values['federates-with'] ? { federatesWith: values['federates-with'] } : {}),
    ...(values['expires-at'] ? { expiresAt: values['expires-at'] } : {}),
    ...(values['allow-unknown-selector-type'] ? { allowUnknownSelectorTypes: true } : {}),
  };
  const need = (): string => {
    if (!id) throw new UsageError(`entry ${verb} needs an entry ID`);
    return encodeURIComponent(id);
  };
  switch (verb) {
    case 'create': {
      const e = await client.request<EntryView>('POST', '/v1/entries', fields);
      return printResult(values.json, e, () => e.id);
    }
    case 'list': {
      const qs = new URLSearchParams();
      if (values['trust-domain']) qs.set('trustDomain', values['trust-domain']);
      if (values['parent-id']) qs.set('parentId', values['parent-id']);
      if (values['spiffe-id']) qs.set('spiffeId', values['spiffe-id']);
      for (const s of values.selector ?? []) qs.append('selector', s);
      if (values['page-size']) qs.set('pageSize', values['page-size']);
      if (values['page-token']) qs.set('pageToken', values['page-token']);
      const page = await client.request<{ entries: EntryView[]; nextPageToken?: string }>('GET', `/v1/entries?${qs}`);
      return printResult(values.json, page, () =>
        table([['ID', 'SPIFFE ID', 'PARENT', 'SELECTORS'], ...page.entries.map((e) => [e.id, e.spiffeId, e.parentId, e.selectors.join(' ')])]) +
        (page.nextPageToken ? `\n(next page: --page-token ${page.nextPageToken})` : ''),
      );
    }
    case 'show': {
      const e = await client.request<EntryView>('GET', `/v1/entries/${need()}`);
      return printResult(values.json, e, () => describeEntry(e));
    }
    case 'update': {
      const e = await client.request<EntryView>('PATCH', `/v1/entries/${need()}`, fields);
      return printResult(values.json, e, () => describeEntry(e));
    }
    case 'delete': {
      await client.request('DELETE', `/v1/entries/${need()}`);
      return printResult(values.json, { deleted: id }, () => id ?? '');
    }
    default:
      throw new UsageError(ENROLLMENT_USAGE);
  }
}

export async function agentAdminCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parse(argv, {
    'trust-domain': { type: 'string' },
    'page-size': { type: 'string' },
    'page-token': { type: 'string' },
    fingerprint: { type: 'string' },
    'node-uid': { type: 'string' },
    reason: { type: 'string' },
  });
  const [verb, id] = positionals;
  const client = adminClientFor(values);
  const banTarget = (b: BanView): string => b.spiffeId ?? (b.fingerprint ? `x509pop fingerprint ${b.fingerprint}` : `k8s node ${b.nodeUid}`);
  if (verb === 'bans') {
    const qs = new URLSearchParams();
    if (values['trust-domain']) qs.set('trustDomain', values['trust-domain']);
    if (values['page-size']) qs.set('pageSize', values['page-size']);
    if (values['page-token']) qs.set('pageToken', values['page-token']);
    const page = await client.request<{ bans: BanView[]; nextPageToken?: string }>('GET', `/v1/agents/bans?${qs}`);
    return printResult(values.json, page, () =>
      table([['TRUST DOMAIN', 'BANNED', 'REASON', 'BY', 'SINCE'], ...page.bans.map((b) => [b.trustDomain, banTarget(b), b.reason ?? '-', b.createdBy, b.createdAt])]) +
      (page.nextPageToken ? `\n(next page: --page-token ${page.nextPageToken})` : ''),
    );
  }
  if ((verb === 'ban' || verb === 'unban') && !id) {
    const given = [values.fingerprint, values['node-uid']].filter((v) => v !== undefined).length;
    if (given !== 1 || !values['trust-domain']) throw new UsageError(`agent ${verb} needs a SPIFFE ID, or --trust-domain TD with one of --fingerprint SHA1 or --node-uid UID`);
    const body = {
      trustDomain: values['trust-domain'],
      ...(values.fingerprint ? { fingerprint: values.fingerprint } : { nodeUid: values['node-uid'] }),
      ...(verb === 'ban' && values.reason ? { reason: values.reason } : {}),
    };
    const res = await client.request<BanView>('POST', `/v1/agents/${verb}`, body);
    return printResult(values.json, res, () => banTarget(res));
  }
  if (verb === 'list') {
    const qs = new URLSearchParams();
    if (values['trust-domain']) qs.set('trustDomain', values['trust-domain']);
    if (values['page-size']) qs.set('pageSize', values['page-size']);
    if (values['page-token']) qs.set('pageToken', values['page-token']);
    const page = await client.request<{ agents: NodeView[]; nextPageToken?: string }>('GET', `/v1/agents?${qs}`);
    return printResult(values.json, page, () =>
      table([['SPIFFE ID', 'KIND', 'ATTESTATION', 'SVID EXPIRES', 'BANNED'], ...page.agents.map((a) => [a.spiffeId, a.kind, a.attestationType, a.expiresAt, a.banned ? 'yes' : 'no'])]),
    );
  }
  if ((verb === 'ban' || verb === 'unban' || verb === 'evict') && id) {
    if (values.fingerprint || values['node-uid']) throw new UsageError(`agent ${verb} takes a SPIFFE ID or --fingerprint/--node-uid, not both`);
    const res = await client.request<BanView | undefined>('POST', `/v1/agents/${verb}`, { spiffeId: id, ...(verb === 'ban' && values.reason ? { reason: values.reason } : {}) });
    return printResult(values.json, res ?? { evicted: id }, () => id);
  }
  throw new UsageError(ENROLLMENT_USAGE);
}

export async function bootstrapCommand(argv: string[]): Promise<void> {
  const { values } = parse(argv, { token: { type: 'string' }, write: { type: 'string' } });
  const token = values.token ?? process.env.CAIRN_TOKEN;
  if (!token || !values.write) throw new UsageError(ENROLLMENT_USAGE);
  const svid = await bootstrapDevice(token, values.write);
  say(`wrote svid.pem, svid.key and bundle.pem to ${values.write}`);
  printResult(values.json, svid, () => `${svid.spiffeId} ${svid.serial} ${svid.expiresAt.toISOString()}`);
}

/** Renews now, or with --watch forever at about half-life (±10%), retrying with capped backoff until expiry. */
export async function renewCommand(argv: string[]): Promise<void> {
  const { values } = parse(argv, { dir: { type: 'string' }, watch: { type: 'boolean', default: false }, exec: { type: 'string' } });
  if (!values.dir) throw new UsageError(ENROLLMENT_USAGE);
  const dir = values.dir;
  const after = async (): Promise<void> => {
    if (!values.exec) return;
    const { spawnSync } = await import('node:child_process');
    const r = spawnSync('/bin/sh', ['-c', values.exec], { stdio: 'inherit' });
    if (r.status !== 0) say(`--exec command exited with ${r.status}`);
  };
  if (!values.watch) {
    const svid = await renewDevice(dir);
    await after();
    return printResult(values.json, svid, () => `${svid.spiffeId} ${svid.serial} ${svid.expiresAt.toISOString()}`);
  }
  const stop = new AbortController();
  process.once('SIGINT', () => stop.abort());
  process.once('SIGTERM', () => stop.abort());
  let backoff = 1000;
  while (!stop.signal.aborted) {
    const due = nextRenewal(dir).getTime() - Date.now();
    if (due > 0) await sleep(due, undefined, { signal: stop.signal }).catch(() => undefined);
    if (stop.signal.aborted) break;
    try {
      const svid = await renewDevice(dir);
      backoff = 1000;
      await after();
      say(`renewed ${svid.spiffeId}: serial ${svid.serial}, expires ${svid.expiresAt.toISOString()}`);
    } catch (err) {
      const left = expiryOf(dir).getTime() - Date.now();
      say(`renewal failed (${err instanceof CliError ? err.code : (err as Error).message}); ${Math.max(0, Math.round(left / 1000))}s of validity left, retrying`);
      if (err instanceof CliError && (err.code === 'agent_banned' || err.code === 'unauthenticated' || err.code === 'agent_svid_superseded')) throw err;
      await sleep(Math.min(backoff, Math.max(1000, left / 4)), undefined, { signal: stop.signal }).catch(() => undefined);
      backoff = Math.min(backoff * 2, 60_000);
    }
  }
}
