import 'reflect-metadata';
import { setMaxListeners } from 'node:events';
import { readFileSync } from 'node:fs';
import type { SyncEntry, SyncResponse } from '../../contract/agent-api.js';
import { FailureStreak } from '../../lib/backoff.js';
import { systemClock } from '../../lib/clock.js';
import { generateKeyAndCsr } from '../../lib/pkcs10.js';
import { CaClient, chainPemOf } from '../../node-agent/ca-client.js';
import { nowMs, type AgentTicket, type FromWorker, type ToWorker } from './protocol.js';

/**
 * A worker process of the fleet bench: a few thousand simulated node agents, each with its own key,
 * its own join token and SVID, and its own keep-alive mTLS connection to the CA holding one long-poll,
 * speaking through the agent's real client (node-agent/ca-client.ts) and applying sync answers the way
 * node-agent/agent.ts does. Agents do not request workload SVIDs (issuance has its own benchmark).
 */

interface SimAgent {
  readonly index: number;
  client: CaClient;
  chainPem: string;
  keyPem: string;
  revision: number;
  bundleSequence: number;
  parents: string[];
  /** The CRL and foreign-bundle digests held, sent with every sync as the agent does ('' before the first). */
  crl: string;
  federated: string;
  readonly entries: Map<string, SyncEntry>;
  synced: boolean;
}

const agents: SimAgent[] = [];
let attestFailures = 0;
let syncErrors = 0;
let lastError: string | undefined;
let polling = 0;
/** Sync answers received (every long-poll that returned, for whatever reason). */
let answers = 0;
let loops = newLoops();

/** One signal ends every agent's loop; each of their requests listens to it. */
function newLoops(): AbortController {
  const c = new AbortController();
  setMaxListeners(0, c.signal);
  return c;
}

const outbox: FromWorker[] = [];
function send(msg: FromWorker): void {
  if (outbox.length === 0) setImmediate(flush);
  outbox.push(msg);
}
function flush(): void {
  const batch = outbox.splice(0);
  for (const m of batch) process.send!(m);
}

function status(): FromWorker {
  const cpu = process.cpuUsage();
  return {
    type: 'status',
    attested: agents.length,
    attestFailures,
    synced: agents.filter((a) => a.synced).length,
    polling,
    answers,
    syncErrors,
    lastError,
    rssKb: Number(/VmRSS:\s+(\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? 0),
    cpuMs: (cpu.user + cpu.system) / 1000,
  };
}

/** node-agent/agent.ts's apply(): removed first, then upserts; a full answer replaces the set. */
function apply(a: SimAgent, res: SyncResponse): void {
  const t = nowMs();
  if (res.full) a.entries.clear();
  for (const id of res.removed) a.entries.delete(id);
  for (const e of res.entries) {
    a.entries.set(e.id, e);
    if (e.spiffeId.includes('/probe/')) send({ type: 'got', agent: a.index, spiffeId: e.spiffeId, t, full: res.full });
  }
  if (res.bundle) a.bundleSequence = res.bundle.sequence;
  if (res.revocation) a.crl = res.revocation.digest;
  if (res.federated) a.federated = res.federated.digest;
  a.parents = res.parents;
  a.revision = res.revision;
  a.synced = true;
  if (res.full) send({ type: 'full', agent: a.index, parents: res.parents.length, entries: a.entries.size, t });
}

/**
 * The agent's sync loop (node-agent/agent.ts syncLoop): a full sync, then long-polls of 30 s; after a
 * failure, the agent's backoff (1 s doubling to 30 s, with jitter).
 */
async function syncLoop(a: SimAgent, signal: AbortSignal): Promise<void> {
  const failures = new FailureStreak({ baseMs: 1000, capMs: 30_000 });
  while (!signal.aborted) {
    const wait = a.synced ? 30 : 0;
    try {
      if (wait) polling++;
      let res: SyncResponse;
      try {
        res = await a.client.sync(a.revision, a.bundleSequence, wait, signal, a.crl, a.federated);
      } finally {
        if (wait) polling--;
      }
      failures.succeeded(nowMs());
      answers++;
      if (a.synced && !res.full && res.parents.join() !== a.parents.join()) {
        a.revision = 0; // our aliases changed: take the complete set again
        continue;
      }
      apply(a, res);
    } catch (err) {
      if (signal.aborted) return;
      syncErrors++;
      lastError = (err as Error).message;
      await new Promise((r) => setTimeout(r, failures.failed(nowMs()).retryInMs));
    }
  }
}

async function pool<T>(items: readonly T[], concurrency: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, items.length) }, async () => {
      while (next < items.length) await fn(items[next++]!);
    }),
  );
}

async function attestAll(tickets: readonly AgentTicket[], concurrency: number): Promise<void> {
  const signal = loops.signal;
  await pool(tickets, concurrency, async (ticket) => {
    const key = generateKeyAndCsr();
    try {
      const { svid, caUrl, authorityPem } = await CaClient.attest(ticket.token, key.csr.toString('base64'), { clock: systemClock, deadlineMs: 120_000 });
      const chainPem = chainPemOf(svid);
      const keyPem = key.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
      const a: SimAgent = {
        index: ticket.index,
        client: new CaClient({ caUrl, authorityPem, chainPem, keyPem }),
        chainPem,
        keyPem,
        revision: 0,
        bundleSequence: 0,
        parents: [],
        crl: '',
        federated: '',
        entries: new Map(),
        synced: false,
      };
      agents.push(a);
      void syncLoop(a, signal);
    } catch (err) {
      attestFailures++;
      lastError = (err as Error).message;
    }
  });
  send({ type: 'attested-all' });
}

/** The raw baseline: the same agents, credentials and long-poll loop against a bare TLS server. */
async function retarget(url: string, authorityPem: string, concurrency: number): Promise<void> {
  loops.abort();
  for (const a of agents) a.client.close();
  loops = newLoops();
  const signal = loops.signal;
  // Connect in waves so the handshakes do not all queue at once (as the fleet did while attesting).
  await pool(agents, concurrency, async (a) => {
    a.client = new CaClient({ caUrl: url, authorityPem, chainPem: a.chainPem, keyPem: a.keyPem });
    a.parents = []; // the bare server knows no aliases
    // A first quick request opens the connection (the handshake), then the long-poll loop reuses it.
    await a.client.sync(a.revision, a.bundleSequence, 0, signal).catch(() => undefined);
    void syncLoop(a, signal);
  });
  send({ type: 'retargeted' });
}

process.on('message', (msg: ToWorker) => {
  switch (msg.type) {
    case 'attest':
      void attestAll(msg.tickets, msg.concurrency);
      break;
    case 'status':
      send(status());
      break;
    case 'retarget':
      void retarget(msg.url, msg.authorityPem, msg.concurrency);
      break;
    case 'stop':
      loops.abort();
      for (const a of agents) a.client.close();
      flush();
      process.exit(0);
  }
});
process.on('disconnect', () => process.exit(0));
