import { setTimeout as sleep } from 'node:timers/promises';
import { readFileSync } from 'node:fs';
import { AdminPaths3, MAX_ENTRY_BATCH, type BanView, type BatchCreateEntriesResult, type EntryView, type NodeView } from '../../contract/admin-api.js';
import { parseDuration, formatDuration } from '../../lib/duration.js';
import { requireOneOf, refuseTogether, UsageError, type Parsed, type Values } from '../flags.js';
import type { AGENT_ACTION_FLAGS, AGENT_BANS_FLAGS, AGENT_LIST_FLAGS, AGENT_UNBAN_FLAGS } from '../specs/agent.js';
import type { BOOTSTRAP_FLAGS, RENEW_FLAGS } from '../specs/device.js';
import type { ENTRY_CREATE_FLAGS, ENTRY_ID_FLAGS, ENTRY_LIST_FLAGS, ENTRY_UPDATE_FLAGS } from '../specs/entry.js';
import type { TOKEN_CREATE_FLAGS } from '../specs/token.js';
import { adminClientFor, CliError, readInputFile } from '../client.js';
import { bootstrapDevice, expiryOf, nextRenewal, renewDevice } from '../device-client.js';
import { printResult, say, table } from '../output.js';

export async function tokenCreate({ values, command }: Parsed<typeof TOKEN_CREATE_FLAGS>): Promise<void> {
  refuseTogether(values, 'agent-id', 'spiffe-id', command);
  if (values['federates-with'] && !values['spiffe-id']) throw new UsageError('--federates-with is for workload credentials: add --spiffe-id (an agent\'s workloads federate through their entries)', command);
  const res = await adminClientFor(values).request<{ id: string; kind: string; token: string; spiffeId: string; expiresAt: string }>('POST', '/v1/tokens', {
    trustDomain: values['trust-domain'],
    ...(values.ttl ? { ttlSeconds: parseDuration(values.ttl) } : {}),
    ...(values['agent-id'] ? { agentId: values['agent-id'] } : {}),
    ...(values['spiffe-id'] ? { spiffeId: values['spiffe-id'] } : {}),
    ...(values.selector ? { selectors: values.selector } : {}),
    ...(values['allow-unknown-selector-type'] ? { allowUnknownSelectorTypes: true } : {}),
    ...(values['federates-with'] ? { federatesWith: values['federates-with'] } : {}),
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

/** The entry fields the flags set; absent flags leave a field out (update keeps it). */
function entryFields(values: Omit<Values<typeof ENTRY_UPDATE_FLAGS>, 'no-admin'> & { 'no-admin'?: boolean | undefined }, command: string) {
  if (values.admin && values['no-admin']) throw new UsageError('--admin and --no-admin contradict each other', command);
  if (values['no-admin'] && values['admin-role'] !== undefined) throw new UsageError('--admin-role is for admin entries: drop it or --no-admin', command);
  return {
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
}

const ENTRY_FIELD_FLAGS = ['spiffe-id', 'parent-id', 'selector', 'x509-svid-ttl', 'jwt-svid-ttl', 'dns', 'hint', 'admin', 'no-admin', 'admin-role', 'federates-with', 'expires-at'];

export async function entryCreate({ values, command }: Parsed<typeof ENTRY_CREATE_FLAGS>): Promise<void> {
  if (values.file !== undefined) return entryCreateFromFile(values, values.file, command);
  const fields = entryFields(values, command);
  const e = await adminClientFor(values).request<EntryView>('POST', '/v1/entries', fields);
  printResult(values.json, e, () => e.id);
}

/** The items of an entries file: `{"entries": [...]}` (the batch API's body) or a bare array. */
function entriesOf(text: string, flag: string, command: string): unknown[] {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new UsageError(`${flag} is not JSON: ${(err as Error).message}`, command);
  }
  const items = Array.isArray(doc) ? doc : doc !== null && typeof doc === 'object' && Array.isArray((doc as { entries?: unknown }).entries) ? (doc as { entries: unknown[] }).entries : undefined;
  if (!items) throw new UsageError(`${flag} must hold {"entries": [...]} or a JSON array of entries`, command);
  if (items.length === 0) throw new UsageError(`${flag} holds no entries`, command);
  return items;
}

/**
 * `entry create --file`: the file's entries through POST /v1/entries/batch, in requests of at most
 * MAX_ENTRY_BATCH (each one transaction). Every item gets its line; any item not created makes the
 * exit status 1, after the others were created (as the API does: items succeed or fail alone).
 */
async function entryCreateFromFile(values: Values<typeof ENTRY_CREATE_FLAGS>, file: string, command: string): Promise<void> {
  const fieldFlags = ENTRY_FIELD_FLAGS.filter((f) => f !== 'no-admin' && values[f as keyof typeof values] !== undefined);
  if (fieldFlags.length > 0) throw new UsageError(`--file and --${fieldFlags[0]} cannot be used together (the file gives every field)`, command);
  const flag = `--file ${file}`;
  let text: string;
  if (file === '-') {
    try {
      text = readFileSync(0, 'utf8');
    } catch (err) {
      throw new UsageError(`cannot read --file - (stdin): ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, command);
    }
  } else text = readInputFile(file, '--file');
  const items = entriesOf(text, flag, command).map((item) =>
    values['allow-unknown-selector-type'] && item !== null && typeof item === 'object' && !Array.isArray(item) ? { allowUnknownSelectorTypes: true, ...item } : item,
  );
  const client = adminClientFor(values);
  const results: BatchCreateEntriesResult['results'] = [];
  for (let at = 0; at < items.length; at += MAX_ENTRY_BATCH) {
    const res = await client.request<BatchCreateEntriesResult>('POST', AdminPaths3.entriesBatch, { entries: items.slice(at, at + MAX_ENTRY_BATCH) });
    results.push(...res.results);
  }
  const failed = results.flatMap((r, i) => (r.error ? [{ i, error: r.error }] : []));
  for (const { i, error } of failed) say(`error: ${flag}: entries[${i}]: ${error.code}: ${error.message}`);
  printResult(values.json, { results }, () =>
    table([['ITEM', 'ID', 'SPIFFE ID'], ...results.flatMap((r, i) => (r.entry ? [[String(i), r.entry.id, r.entry.spiffeId]] : []))]),
  );
  if (failed.length > 0) throw new CliError('entries_not_created', `${failed.length} of ${results.length} entries in ${file} were not created (the others were)`);
  say(`created ${results.length} entries`);
}

export async function entryList({ values }: Parsed<typeof ENTRY_LIST_FLAGS>): Promise<void> {
  const qs = new URLSearchParams();
  if (values['trust-domain']) qs.set('trustDomain', values['trust-domain']);
  if (values['parent-id']) qs.set('parentId', values['parent-id']);
  if (values['spiffe-id']) qs.set('spiffeId', values['spiffe-id']);
  for (const s of values.selector ?? []) qs.append('selector', s);
  if (values['page-size']) qs.set('pageSize', values['page-size']);
  if (values['page-token']) qs.set('pageToken', values['page-token']);
  const page = await adminClientFor(values).request<{ entries: EntryView[]; nextPageToken?: string }>('GET', `/v1/entries?${qs}`);
  printResult(values.json, page, () =>
    table([['ID', 'SPIFFE ID', 'PARENT', 'SELECTORS'], ...page.entries.map((e) => [e.id, e.spiffeId, e.parentId, e.selectors.join(' ')])]) +
    (page.nextPageToken ? `\n(next page: --page-token ${page.nextPageToken})` : ''),
  );
}

export async function entryShow({ values, positionals }: Parsed<typeof ENTRY_ID_FLAGS>): Promise<void> {
  const e = await adminClientFor(values).request<EntryView>('GET', `/v1/entries/${encodeURIComponent(positionals[0]!)}`);
  printResult(values.json, e, () => describeEntry(e));
}

export async function entryUpdate({ values, positionals, command }: Parsed<typeof ENTRY_UPDATE_FLAGS>): Promise<void> {
  requireOneOf(values, ENTRY_FIELD_FLAGS, command);
  const fields = entryFields(values, command);
  const e = await adminClientFor(values).request<EntryView>('PATCH', `/v1/entries/${encodeURIComponent(positionals[0]!)}`, fields);
  printResult(values.json, e, () => describeEntry(e));
}

export async function entryDelete({ values, positionals }: Parsed<typeof ENTRY_ID_FLAGS>): Promise<void> {
  const id = positionals[0]!;
  await adminClientFor(values).request('DELETE', `/v1/entries/${encodeURIComponent(id)}`);
  printResult(values.json, { deleted: id }, () => id);
}

export async function agentListCommand({ values }: Parsed<typeof AGENT_LIST_FLAGS>): Promise<void> {
  const qs = new URLSearchParams();
  if (values['trust-domain']) qs.set('trustDomain', values['trust-domain']);
  if (values['page-size']) qs.set('pageSize', values['page-size']);
  if (values['page-token']) qs.set('pageToken', values['page-token']);
  const page = await adminClientFor(values).request<{ agents: NodeView[]; nextPageToken?: string }>('GET', `/v1/agents?${qs}`);
  printResult(values.json, page, () =>
    table([['SPIFFE ID', 'KIND', 'ATTESTATION', 'SVID EXPIRES', 'BANNED'], ...page.agents.map((a) => [a.spiffeId, a.kind, a.attestationType, a.expiresAt, a.banned ? 'yes' : 'no'])]) +
    (page.nextPageToken ? `\n(next page: --page-token ${page.nextPageToken})` : ''),
  );
}

export async function agentActionCommand(verb: 'evict', { values, positionals }: Parsed<typeof AGENT_ACTION_FLAGS>): Promise<void> {
  const id = positionals[0]!;
  const res = await adminClientFor(values).request<NodeView | undefined>('POST', `/v1/agents/${verb}`, { spiffeId: id });
  printResult(values.json, res ?? { evicted: id }, () => id);
}

const banTarget = (b: BanView): string => b.spiffeId ?? (b.fingerprint ? `x509pop fingerprint ${b.fingerprint}` : `k8s node ${b.nodeUid}`);

/** Ban or unban by SPIFFE ID, or by --trust-domain with --fingerprint or --node-uid. */
export async function agentBanCommand(verb: 'ban' | 'unban', { values, positionals, command }: Parsed<typeof AGENT_UNBAN_FLAGS> & { values: { reason?: string | undefined } }): Promise<void> {
  const id = positionals[0];
  const reason = verb === 'ban' && values.reason ? { reason: values.reason } : {};
  if (!id) {
    const given = [values.fingerprint, values['node-uid']].filter((v) => v !== undefined).length;
    if (given !== 1 || !values['trust-domain']) throw new UsageError(`agent ${verb} needs a SPIFFE ID, or --trust-domain TD with one of --fingerprint SHA1 or --node-uid UID`, command);
    const body = { trustDomain: values['trust-domain'], ...(values.fingerprint ? { fingerprint: values.fingerprint } : { nodeUid: values['node-uid'] }), ...reason };
    const res = await adminClientFor(values).request<BanView>('POST', `/v1/agents/${verb}`, body);
    return printResult(values.json, res, () => banTarget(res));
  }
  if (values.fingerprint || values['node-uid']) throw new UsageError(`agent ${verb} takes a SPIFFE ID or --fingerprint/--node-uid, not both`, command);
  const res = await adminClientFor(values).request<BanView | undefined>('POST', `/v1/agents/${verb}`, { spiffeId: id, ...reason });
  printResult(values.json, res ?? { [verb === 'ban' ? 'banned' : 'unbanned']: id }, () => id);
}

export async function agentBansCommand({ values }: Parsed<typeof AGENT_BANS_FLAGS>): Promise<void> {
  const qs = new URLSearchParams();
  if (values['trust-domain']) qs.set('trustDomain', values['trust-domain']);
  if (values['page-size']) qs.set('pageSize', values['page-size']);
  if (values['page-token']) qs.set('pageToken', values['page-token']);
  const page = await adminClientFor(values).request<{ bans: BanView[]; nextPageToken?: string }>('GET', `/v1/agents/bans?${qs}`);
  printResult(values.json, page, () =>
    table([['TRUST DOMAIN', 'BANNED', 'REASON', 'BY', 'SINCE'], ...page.bans.map((b) => [b.trustDomain, banTarget(b), b.reason ?? '-', b.createdBy, b.createdAt])]) +
    (page.nextPageToken ? `\n(next page: --page-token ${page.nextPageToken})` : ''),
  );
}

export async function bootstrapCommand({ values }: Parsed<typeof BOOTSTRAP_FLAGS>): Promise<void> {
  const svid = await bootstrapDevice(values.token, values.write);
  const federated = svid.federatedTrustDomains?.length ? ` and federated/{${svid.federatedTrustDomains.join(',')}}.pem` : '';
  say(`wrote svid.pem, svid.key, bundle.pem${federated} to ${values.write}`);
  printResult(values.json, svid, () => `${svid.spiffeId} ${svid.serial} ${svid.expiresAt.toISOString()}`);
}

/** Renews now, or with --watch forever at about half-life (±10%), retrying with capped backoff until expiry. */
export async function renewCommand({ values }: Parsed<typeof RENEW_FLAGS>): Promise<void> {
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
      say(`renewed ${svid.spiffeId}: serial ${svid.serial}, expires ${svid.expiresAt.toISOString()}${svid.federatedTrustDomains?.length ? `, federated with ${svid.federatedTrustDomains.join(' ')}` : ''}`);
    } catch (err) {
      const left = expiryOf(dir).getTime() - Date.now();
      say(`renewal failed (${err instanceof CliError ? err.code : (err as Error).message}); ${Math.max(0, Math.round(left / 1000))}s of validity left, retrying`);
      if (err instanceof CliError && (err.code === 'agent_banned' || err.code === 'unauthenticated' || err.code === 'agent_svid_superseded' || err.code === 'svid_revoked')) throw err;
      await sleep(Math.min(backoff, Math.max(1000, left / 4)), undefined, { signal: stop.signal }).catch(() => undefined);
      backoff = Math.min(backoff * 2, 60_000);
    }
  }
}
