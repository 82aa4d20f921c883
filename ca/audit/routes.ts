import { errorResponses } from '../../contract/common.js';
import { AuditKeyView, AuditPaths, CheckpointNote, AuditSearchQuery, AuditSearchView, ConsistencyQuery, EntriesQuery, EntriesView, InclusionQuery, ProofView } from '../../contract/audit-api.js';
import type { App } from '../http/types.js';
import type { Checkpointer } from './checkpointer.js';
import type { AuditLog } from './service.js';

const b64 = (b: Buffer): string => b.toString('base64');
const NOTE = 'text/plain; charset=utf-8';

/** `cairn audit …` and any auditor: checkpoints, entries exactly as hashed, proofs, the log's key. */
export function registerAuditRoutes(app: App, log: AuditLog, checkpointer: Checkpointer): void {
  const tags = ['audit log'];
  app.get(AuditPaths.checkpoint, {
    schema: { tags, summary: 'The latest signed checkpoint (C2SP tlog-checkpoint signed note, text/plain)', response: { 200: CheckpointNote, ...errorResponses } },
  }, async (_req, reply) => reply.type(NOTE).send((await log.latest()).note));

  app.post(AuditPaths.checkpoint, {
    schema: { tags, summary: 'Integrate every committed entry and sign a checkpoint now; answers it (text/plain)', response: { 200: CheckpointNote, ...errorResponses } },
  }, async (_req, reply) => reply.type(NOTE).send((await checkpointer.signNow()).note));

  app.get<{ Querystring: { start: number; end: number } }>(AuditPaths.entries, {
    schema: { tags, summary: 'Integrated entries, start inclusive, end exclusive (at most 1000)', querystring: EntriesQuery, response: { 200: EntriesView, ...errorResponses } },
  }, async (req) => ({ entries: (await log.entries(req.query.start, req.query.end)).map((e) => ({ index: e.index, data: b64(e.data) })) }));

  app.get<{ Querystring: { index: number; size: number } }>(AuditPaths.inclusion, {
    schema: { tags, summary: 'RFC 6962 inclusion proof of entry index in the tree of size entries', querystring: InclusionQuery, response: { 200: ProofView, ...errorResponses } },
  }, async (req) => ({ hashes: (await log.inclusion(req.query.index, req.query.size)).map(b64) }));

  app.get<{ Querystring: { from: number; to: number } }>(AuditPaths.consistency, {
    schema: { tags, summary: 'RFC 6962 consistency proof between the trees of sizes from and to', querystring: ConsistencyQuery, response: { 200: ProofView, ...errorResponses } },
  }, async (req) => ({ hashes: (await log.consistency(req.query.from, req.query.to)).map(b64) }));

  app.get(AuditPaths.key, {
    schema: { tags, summary: 'The log\'s note verifier key and raw Ed25519 public key', response: { 200: AuditKeyView, ...errorResponses } },
  }, async () => log.key());

  app.get<{ Querystring: AuditSearchQuery }>(AuditPaths.search, {
    schema: { tags, summary: 'Integrated entries by event, actor, SPIFFE ID, serial and time range (all given must match)', querystring: AuditSearchQuery, response: { 200: AuditSearchView, ...errorResponses } },
  }, async (req) => {
    const q = req.query;
    const limit = q.limit ?? 100;
    const found = await log.search({
      event: q.event, actor: q.actor, spiffeId: q.spiffeId, serial: q.serial?.toLowerCase(),
      since: q.since === undefined ? undefined : new Date(q.since), until: q.until === undefined ? undefined : new Date(q.until),
    }, limit, q.after ?? -1);
    return { entries: found.map((e) => ({ index: e.index, data: b64(e.data) })), ...(found.length === limit ? { next: found[found.length - 1]!.index } : {}) };
  });
}
