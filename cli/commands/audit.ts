import { readFileSync } from 'node:fs';
import type { AuditEntryView, AuditKeyView, AuditSearchView, EntriesView, ProofView } from '../../contract/audit-api.js';
import { AuditPaths, MAX_AUDIT_PAGE } from '../../contract/audit-api.js';
import { writeFileAtomic } from '../../lib/fs.js';
import { leafHash, rootOf, verifyConsistency } from '../../lib/merkle.js';
import { openNote, parseCheckpoint, type Checkpoint } from '../../lib/signed-note.js';
import { adminClientFor, CliError, type AdminClient } from '../client.js';
import type { Parsed } from '../flags.js';
import { printResult, say } from '../output.js';
import type { AUDIT_SEARCH_FLAGS, AUDIT_TAIL_FLAGS, AUDIT_VERIFY_FLAGS } from '../specs/audit.js';

const failed = (message: string, details?: Record<string, unknown>): CliError => new CliError('audit_verify_failed', message, undefined, details);
const b64 = (s: string): Buffer => Buffer.from(s, 'base64');

async function signedCheckpoint(client: AdminClient, pinned?: string): Promise<{ vkey: string; note: string; checkpoint: Checkpoint }> {
  const key = pinned === undefined ? await client.request<AuditKeyView>('GET', AuditPaths.key) : { vkey: pinned };
  const note = await client.request<string>('GET', AuditPaths.checkpoint);
  if (typeof note !== 'string') throw failed('the CA did not answer a checkpoint note');
  let text: string;
  try {
    text = openNote(note, key.vkey);
  } catch (err) {
    throw failed(`the checkpoint's signature does not verify: ${(err as Error).message}`);
  }
  const checkpoint = parseCheckpoint(text);
  if (checkpoint.origin !== key.vkey.split('+')[0]) throw failed(`the checkpoint's origin ${checkpoint.origin} is not the key's name`);
  return { vkey: key.vkey, note, checkpoint };
}

async function consistencyProof(client: AdminClient, from: number, to: number): Promise<Buffer[]> {
  return (await client.request<ProofView>('GET', `${AuditPaths.consistency}?from=${from}&to=${to}`)).hashes.map(b64);
}

/**
 * The first entry the signed root does not vouch for. The CA's consistency proofs come from the
 * subtree hashes it stored when the entries were integrated, so a prefix of the entries as served
 * proves consistent with the signed tree exactly when none of them changed since: binary search.
 */
async function firstBadIndex(client: AdminClient, leaves: readonly Buffer[], checkpoint: Checkpoint): Promise<number> {
  let good = 0;
  let bad = leaves.length;
  while (bad - good > 1) {
    const mid = Math.floor((good + bad) / 2);
    const ok = verifyConsistency(mid, checkpoint.size, rootOf(leaves.slice(0, mid)), checkpoint.root, await consistencyProof(client, mid, checkpoint.size));
    if (ok) good = mid;
    else bad = mid;
  }
  return good;
}

export async function auditVerify({ values }: Parsed<typeof AUDIT_VERIFY_FLAGS>): Promise<void> {
  const client = adminClientFor(values);
  const { vkey, note, checkpoint } = await signedCheckpoint(client, values.vkey);
  const leaves: Buffer[] = [];
  for (let start = 0; start < checkpoint.size; start += MAX_AUDIT_PAGE) {
    const end = Math.min(start + MAX_AUDIT_PAGE, checkpoint.size);
    const page = await client.request<EntriesView>('GET', `${AuditPaths.entries}?start=${start}&end=${end}`);
    for (const e of page.entries) {
      if (e.index !== leaves.length) throw failed(`entry ${leaves.length} is missing (the CA served entry ${e.index} in its place)`, { index: leaves.length });
      leaves.push(leafHash(b64(e.data)));
    }
    if (leaves.length < end) throw failed(`entry ${leaves.length} is missing (the signed tree has ${checkpoint.size} entries)`, { index: leaves.length });
  }
  if (!rootOf(leaves).equals(checkpoint.root)) {
    const index = await firstBadIndex(client, leaves, checkpoint);
    throw failed(`entry ${index} is not the entry the signed checkpoint (size ${checkpoint.size}) holds: it was altered, removed or moved`, { index });
  }
  let earlier: Checkpoint | undefined;
  if (values['checkpoint-file']) {
    const file = values['checkpoint-file'];
    try {
      earlier = parseCheckpoint(openNote(readFileSync(file, 'utf8'), vkey));
    } catch (err) {
      throw failed(`${file} is not a checkpoint signed by this log's key: ${(err as Error).message}`);
    }
    if (earlier.origin !== checkpoint.origin) throw failed(`${file} is a checkpoint of another log (${earlier.origin})`);
    if (earlier.size > checkpoint.size) throw failed(`the log has ${checkpoint.size} entries, fewer than the ${earlier.size} of ${file}: it was truncated`, { index: checkpoint.size });
    if (!verifyConsistency(earlier.size, checkpoint.size, earlier.root, checkpoint.root, await consistencyProof(client, earlier.size, checkpoint.size))) {
      const index = await firstBadIndex(client, leaves.slice(0, earlier.size), earlier).catch(() => 0);
      throw failed(`the log does not extend ${file} (size ${earlier.size}): history was rewritten, first at entry ${index}`, { index });
    }
  }
  if (values['save-checkpoint']) writeFileAtomic(values['save-checkpoint'], note, 0o644);
  const result = { origin: checkpoint.origin, size: checkpoint.size, root: checkpoint.root.toString('base64'), vkey, ...(earlier ? { consistentWith: { size: earlier.size, root: earlier.root.toString('base64') } } : {}) };
  printResult(values.json, result, () =>
    `verified: ${checkpoint.size} entries of ${checkpoint.origin}, root ${result.root}` + (earlier ? `, consistent with the checkpoint of size ${earlier.size}` : ''));
}

interface ShownEntry {
  readonly index: number;
  readonly entry: Record<string, unknown>;
}

const decode = (e: AuditEntryView): ShownEntry => ({ index: e.index, entry: JSON.parse(b64(e.data).toString('utf8')) as Record<string, unknown> });

/** One line per entry: index, time, event, actor, then the subject's fields. */
function line({ index, entry }: ShownEntry): string {
  const { time, event, actor, ...subject } = entry;
  const rest = Object.entries(subject).map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`).join(' ');
  return `${index}\t${String(time)}\t${String(event)}\t${String(actor)}\t${rest}`;
}

export async function auditSearch({ values }: Parsed<typeof AUDIT_SEARCH_FLAGS>): Promise<void> {
  const q = new URLSearchParams();
  if (values.actor) q.set('actor', values.actor);
  if (values['spiffe-id']) q.set('spiffeId', values['spiffe-id']);
  if (values.serial) q.set('serial', values.serial.replace(/:/g, '').toLowerCase());
  if (values.event) q.set('event', values.event);
  if (values.since) q.set('since', values.since);
  if (values.until) q.set('until', values.until);
  q.set('limit', values.limit ?? '100');
  const found = await adminClientFor(values).request<AuditSearchView>('GET', `${AuditPaths.search}?${q}`);
  const shown = found.entries.map(decode);
  printResult(values.json, shown, () => shown.map(line).join('\n'));
  if (found.next !== undefined && !values.json) say(`more entries match: narrow the search (e.g. --since) or raise --limit`);
}

export async function auditTail({ values }: Parsed<typeof AUDIT_TAIL_FLAGS>): Promise<void> {
  const client = adminClientFor(values);
  const print = (entries: readonly ShownEntry[]): void => {
    for (const e of entries) process.stdout.write((values.json ? JSON.stringify(e) : line(e)) + '\n');
  };
  const n = Number(values.lines ?? '10');
  // the newest integrated entries: search walks them by index, so the last page is found from the checkpoint's size
  const { checkpoint } = await signedCheckpoint(client);
  let after = Math.max(-1, checkpoint.size - n - 1);
  for (;;) {
    const page = await client.request<AuditSearchView>('GET', `${AuditPaths.search}?after=${after}&limit=500`);
    const entries = page.entries.map(decode);
    if (!values.follow && checkpoint.size > 0) print(entries.filter((e) => e.index < checkpoint.size));
    else print(entries);
    if (entries.length > 0) after = entries[entries.length - 1]!.index;
    if (!values.follow) return;
    if (page.next === undefined) await new Promise((r) => setTimeout(r, 1000));
  }
}
