/**
 * Entries per second through the admin API, one by one (POST /v1/entries, the baseline) against
 * batches (POST /v1/entries/batch), on the fleet's two replicas over one PostgreSQL, in one run:
 *
 *   source scripts/postgres.sh && start_private_postgres
 *   DATABASE_URL="$CAIRN_TEST_DATABASE_URL" node --import tsx bench/fleet/entry-batch-timing.ts [ENTRIES] [CONCURRENCY]
 *   stop_private_postgres
 *
 * Both halves create ENTRIES entries spread over 100 agents with the same concurrency; they differ only
 * in the endpoint. The batch half is the fleet benchmark's own setup step (createFleetState), so this
 * is a quick check of it, short enough for a shared machine.
 */
import { AdminPaths3, MAX_ENTRY_BATCH } from '../../contract/admin-api.js';
import { agentId, TRUST_DOMAIN } from './protocol.js';
import { createFleetState, inParallel, startReplicas } from './setup.js';

const entries = Number(process.argv[2] ?? 5000);
const concurrency = Number(process.argv[3] ?? 16);
const AGENTS = 100;
// other SPIFFE IDs than createFleetState's (…/w/<agent>/<k>), the same parents and selectors
const single = (j: number) => ({ spiffeId: `spiffe://${TRUST_DOMAIN}/single/${j % AGENTS}/${Math.floor(j / AGENTS)}`, parentId: agentId(j % AGENTS), selectors: [`unix:uid:${1000 + Math.floor(j / AGENTS)}`] });

if (!process.env.DATABASE_URL) throw new Error('this script needs DATABASE_URL (see its header)');
const replicas = await startReplicas([]);
try {
  // creates the trust domain too
  const { entriesMs: batchMs } = await createFleetState(replicas, AGENTS, entries, concurrency);
  const t0 = performance.now();
  await inParallel(Array.from({ length: entries }, (_, j) => j), concurrency, async (j) => {
    await replicas.admin(j, AdminPaths3.entries, single(j));
  });
  const singleMs = performance.now() - t0;
  const one = entries / (singleMs / 1000);
  const batch = entries / (batchMs / 1000);
  console.log(`${entries} entries, ${concurrency} requests in flight, two replicas, 503 retries ${replicas.refused.count}`);
  console.log(`one by one (POST /v1/entries):        ${(singleMs / 1000).toFixed(1)} s, ${one.toFixed(0)} entries/s`);
  console.log(`batches of ${MAX_ENTRY_BATCH} (POST /v1/entries/batch): ${(batchMs / 1000).toFixed(1)} s, ${batch.toFixed(0)} entries/s (×${(batch / one).toFixed(1)})`);
} finally {
  await replicas.stop();
}
