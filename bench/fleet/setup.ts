import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AdminPaths3, MAX_ENTRY_BATCH, type BatchCreateEntriesResult } from '../../contract/admin-api.js';
import { startBenchCa, type BenchCa } from '../ca-process.js';
import { agentId, POOL_ALIAS, POOL_SELECTOR, SERVER_ID, TRUST_DOMAIN, type AgentTicket } from './protocol.js';

/** Runs `fn` over `items` with at most `concurrency` in flight; `onProgress` every ~5 s. */
export async function inParallel<T>(items: readonly T[], concurrency: number, fn: (item: T, i: number) => Promise<void>, onProgress?: (done: number) => void): Promise<void> {
  let next = 0;
  let done = 0;
  let lastReport = performance.now();
  await Promise.all(
    Array.from({ length: Math.min(concurrency, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        await fn(items[i]!, i);
        done++;
        if (onProgress && performance.now() - lastReport > 5000) {
          lastReport = performance.now();
          onProgress(done);
        }
      }
    }),
  );
}

export interface Replicas {
  readonly all: readonly BenchCa[];
  /** The replica for the i-th admin call (alternating). */
  at(i: number): BenchCa;
  /**
   * An admin call on replica i % 2, retried (after Retry-After) while the CA answers 503, as a real
   * client would; the retries are counted in `refused`.
   */
  admin(i: number, path: string, body?: unknown, method?: string): Promise<any>;
  readonly refused: { count: number };
  readonly dataDirs: readonly string[];
  stop(): Promise<void>;
}

export const APP_PREFIX = 'cairn-fleet-';

/** Two `cairn ca start` processes on one PostgreSQL, sharing the key-encryption key and admin token. */
export async function startReplicas(caNodeArgs: string[]): Promise<Replicas> {
  const dirs = [mkdtempSync(join(tmpdir(), 'cairn-fleet-a-')), mkdtempSync(join(tmpdir(), 'cairn-fleet-b-'))];
  const started: BenchCa[] = [];
  try {
    started.push(await startBenchCa(dirs[0]!, caNodeArgs, { applicationName: `${APP_PREFIX}a` }));
    started.push(await startBenchCa(dirs[1]!, caNodeArgs, { reset: false, applicationName: `${APP_PREFIX}b`, env: { CAIRN_KEK_FILE: join(dirs[0]!, 'kek') } }));
  } catch (err) {
    await Promise.all(started.map((c) => c.process.stop()));
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
    throw err;
  }
  const refused = { count: 0 };
  const at = (i: number): BenchCa => started[i % started.length]!;
  return {
    all: started,
    at,
    refused,
    async admin(i, path, body, method) {
      for (let attempt = 1; ; attempt++) {
        try {
          return await at(i).admin(path, body, method);
        } catch (err) {
          if (attempt >= 10 || !/: 503 /.test((err as Error).message)) throw err;
          refused.count++;
          await new Promise((r) => setTimeout(r, 1000));
        }
      }
    },
    dataDirs: dirs,
    async stop() {
      await Promise.all(started.map((c) => c.process.stop()));
      for (const d of dirs) rmSync(d, { recursive: true, force: true });
    },
  };
}

const rate = (n: number, ms: number): string => `${Math.round((n * 1000) / ms).toLocaleString('en-US')}/s`;

export interface SetupResult {
  readonly tickets: AgentTicket[];
  readonly entriesMs: number;
  readonly tokensMs: number;
}

/**
 * Everything through the admin REST API on loopback, spread over both replicas: the trust domain, a
 * node alias every agent belongs to, `entries` entries spread round-robin over `agents` agents (the
 * agents' IDs are chosen up front: each join token names its agent), and one join token per agent.
 */
export async function createFleetState(replicas: Replicas, agents: number, entries: number, concurrency: number): Promise<SetupResult> {
  await replicas.admin(0, '/v1/trust-domains', { name: TRUST_DOMAIN });
  await replicas.admin(0, '/v1/entries', { spiffeId: POOL_ALIAS, parentId: SERVER_ID, selectors: [POOL_SELECTOR], allowUnknownSelectorTypes: true });

  // In batches through POST /v1/entries/batch: one request, transaction and notification per 1,000
  // entries instead of one each (100,000 entries one by one took 17 minutes).
  const batches = Array.from({ length: Math.ceil(entries / MAX_ENTRY_BATCH) }, (_, b) => b);
  console.error(`   creating ${entries.toLocaleString('en-US')} entries in ${batches.length.toLocaleString('en-US')} batches of up to ${MAX_ENTRY_BATCH.toLocaleString('en-US')} (${Math.min(concurrency, batches.length)} requests in flight, both replicas)`);
  let t0 = performance.now();
  let created = 0;
  await inParallel(
    batches,
    concurrency,
    async (b) => {
      const items = [];
      for (let j = b * MAX_ENTRY_BATCH; j < Math.min(entries, (b + 1) * MAX_ENTRY_BATCH); j++) {
        const agent = j % agents;
        const k = Math.floor(j / agents);
        items.push({ spiffeId: `spiffe://${TRUST_DOMAIN}/w/${agent}/${k}`, parentId: agentId(agent), selectors: [`unix:uid:${1000 + k}`] });
      }
      const { results } = (await replicas.admin(b, AdminPaths3.entriesBatch, { entries: items })) as BatchCreateEntriesResult;
      const failed = results.find((r) => r.error);
      if (failed) throw new Error(`batch ${b}: an entry was not created: ${failed.error!.code}: ${failed.error!.message}`);
      created += results.length;
    },
    () => console.error(`   entries ${created.toLocaleString('en-US')}/${entries.toLocaleString('en-US')} (${rate(created, performance.now() - t0)})`),
  );
  const entriesMs = performance.now() - t0;
  console.error(`   entries created in ${(entriesMs / 1000).toFixed(1)} s (${rate(entries, entriesMs)})`);

  t0 = performance.now();
  const tickets: AgentTicket[] = new Array(agents);
  await inParallel(Array.from({ length: agents }, (_, i) => i), concurrency, async (i) => {
    const created = await replicas.admin(i, '/v1/tokens', { trustDomain: TRUST_DOMAIN, agentId: agentId(i), selectors: [POOL_SELECTOR], ttlSeconds: 4 * 3600, allowUnknownSelectorTypes: true });
    tickets[i] = { index: i, token: created.token };
  });
  const tokensMs = performance.now() - t0;
  console.error(`   ${agents.toLocaleString('en-US')} join tokens minted in ${(tokensMs / 1000).toFixed(1)} s (${rate(agents, tokensMs)})`);
  return { tickets, entriesMs, tokensMs };
}
