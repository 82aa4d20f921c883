import { createPublicKey, X509Certificate, type KeyObject } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { JwtSvidMessage, SyncEntry, TaintedAuthority, X509SvidMessage } from '../contract/agent-api.js';
import type { Clock } from '../lib/clock.js';
import { describeWriteError, errnoCode } from '../lib/fs.js';
import { FailureStreak, type StreakEnd } from '../lib/backoff.js';
import type { Logger } from '../lib/log.js';
import { generateKeyAndCsr } from '../lib/pkcs10.js';
import { RepeatGate } from '../lib/repeat-gate.js';
import type { Bundle } from '../spiffe/bundle/bundle.js';
import { parseJwtSvidInsecure } from '../spiffe/svid/jwt.js';
import type { ConnectionAttestation, HealthState, PeerInfo, Workload, WorkloadApiPorts, WorkloadSnapshot, X509Identity, JwtSvidResult } from '../workload-api/ports.js';
import { CaClient, CaError, chainPemOf, type AgentCredentials } from './ca-client.js';
import { clearPendingAttestationKey, saveAgentState, type PersistedAgent } from './storage/agent-state.js';
import { DiscoveryLog } from './caller/discovery.js';
import { FederatedBundles } from './federation.js';
import type { AgentGauges } from './metrics.js';
import { TemplateInstances, type TemplateInstance } from './templates/instances.js';

export interface AgentDeps {
  readonly client: CaClient;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly dataDir: string;
  readonly spiffeId: string;
  readonly trustDomain: string;
  /**
   * The workload attestors, run when a connection is accepted: what identifies the caller is read
   * then, and each call re-checks (cheaply) that the process is still the one attested.
   */
  readonly identify: (peer: PeerInfo) => IdentifiedCaller;
  /** How often unregistered.json may be rewritten; default 5000 ms. */
  readonly discoveryWriteIntervalMs?: number;
  /** [0,1) for rotation jitter; Math.random by default. */
  readonly jitter?: () => number;
  /** The client's credentials are not in the data dir yet (the write after attestation failed): keep trying. */
  readonly credentialsUnpersisted?: boolean;
  /**
   * Attests again, for when the CA no longer accepts our SVID: from the node's own evidence (PSAT,
   * x509pop) or a token the host can mint (`cairn up`). Absent for an agent given a join token: it
   * then stops with AgentRefusedError, saying what to do.
   */
  readonly reattest?: () => Promise<PersistedAgent>;
  /** The id of the join token the persisted SVID was bought with, kept in agent-svid.json across renewals. */
  readonly joinTokenId?: string | undefined;
  /** How long a template identity no connection holds is kept after its last use (default 10 minutes). */
  readonly templateIdleMs?: number | undefined;
}

/** What one selector set is entitled to: entries, else the identities templates render for it. */
interface CallerView {
  readonly version: number;
  readonly entries: SyncEntry[];
  readonly instances: readonly TemplateInstance[];
  /** Why templates that apply give no identity. */
  readonly refusals: readonly string[];
  readonly snapshot: WorkloadSnapshot;
}

interface CachedJwt {
  readonly token: string;
  readonly kid: string;
  readonly renewAt: number;
}

/**
 * One FetchJWTSVID answer and what it was made of: it holds at the agent version it was computed at
 * (entries, SVIDs) while each token is still the one cached, and fresh.
 */
interface JwtAnswer {
  readonly version: number;
  readonly svids: readonly JwtSvidResult[];
  readonly tokens: readonly (readonly [key: string, jwt: CachedJwt])[];
}

/** As many answers as tokens are cached: a caller asking for ever new audiences cannot grow either past it. */
const MAX_CACHED_JWTS = 10_000;

/**
 * The CA refuses this agent's SVID (evicted, expired or superseded while it was away) and the agent
 * has no way to attest again by itself: only the operator can help, and the message says how.
 */
export class AgentRefusedError extends Error {
  override readonly name = 'AgentRefusedError';
}

/** The CA does not accept the presented SVID (as opposed to being away, or refusing one request). */
export function isRefusal(err: unknown): err is CaError {
  return err instanceof CaError && err.status === 401;
}

/** Retry pacing of every repeated call to the CA: 1 s doubling to 30 s, with jitter. */
const BACKOFF = { baseMs: 1000, capMs: 30_000 } as const;

/** A connection's caller as the workload attestors see it (node-agent/caller/connection.ts). */
export interface IdentifiedCaller {
  /** Resolved once per connection; a failed lookup is retried by the next call. */
  selectors(): Promise<string[]>;
  /** Throws CallerChangedError when the process exited or exec'd since accept. */
  recheck(): void;
  release(): void;
}

interface HeldSvid {
  readonly identity: X509Identity;
  /** Lowercase hex, as the CA names it in revocations. */
  readonly serial: string;
  /** The CA revoked it: replaced at once, and no longer served once no replacement is being issued. */
  readonly revoked?: boolean;
  readonly revision: number;
  readonly notBefore: number;
  readonly notAfter: number;
  /** Due for renewal from then; 0 when its chain was signed by a tainted authority (re-issue now). */
  renewAt: number;
}

/**
 * Authorities the operator tainted, as sync reports them. What they signed is replaced at once:
 * X.509-SVIDs (a certificate in the chain verifies with a tainted key) and JWT-SVIDs (by `kid`).
 */
export class TaintedAuthorities {
  private readonly x509 = new Map<string, KeyObject>();
  private readonly jwt = new Set<string>();

  /** Replaces the set; returns the ids that are newly tainted. */
  update(list: readonly TaintedAuthority[]): string[] {
    const added = list.filter((a) => !(a.kind === 'x509' ? this.x509.has(a.id) : this.jwt.has(a.id))).map((a) => a.id);
    this.x509.clear();
    this.jwt.clear();
    for (const a of list) {
      if (a.kind === 'jwt') this.jwt.add(a.id);
      else this.x509.set(a.id, createPublicKey({ key: Buffer.from(a.publicKey, 'base64'), format: 'der', type: 'spki' }));
    }
    return added;
  }

  get empty(): boolean {
    return this.x509.size === 0 && this.jwt.size === 0;
  }

  jwtKid(kid: string): boolean {
    return this.jwt.has(kid);
  }

  /** The id of the tainted authority that signed a certificate of this chain (DER, leaf first), if any. */
  signerOf(chain: readonly (Buffer | X509Certificate)[]): string | undefined {
    if (this.x509.size === 0) return undefined;
    for (const c of chain) {
      const cert = c instanceof X509Certificate ? c : new X509Certificate(c);
      for (const [id, key] of this.x509) if (cert.verify(key)) return id;
    }
    return undefined;
  }
}

/** Renew at half the lifetime, ±10% of that half, so a fleet does not renew in lock-step. */
export function renewalTime(notBefore: number, notAfter: number, jitter: number): number {
  const half = (notAfter - notBefore) / 2;
  return notBefore + half + (jitter * 2 - 1) * 0.1 * half;
}

/**
 * The node agent's state machine: entries and bundle from incremental sync, one locally generated
 * key and SVID per entry (keys stay in memory), renewal at about half-life, JWT-SVIDs cached per
 * (identity, audiences) until past half-life. It is the Workload API's ports implementation.
 */
export class NodeAgent implements WorkloadApiPorts {
  private readonly entries = new Map<string, SyncEntry>();
  private readonly svids = new Map<string, HeldSvid>();
  private readonly jwtCache = new Map<string, CachedJwt>();
  /** FetchJWTSVID answers by caller and request, so the same request gets the same object (see Workload.jwtSvids). */
  private readonly jwtAnswers = new Map<string, JwtAnswer>();
  private readonly tainted = new TaintedAuthorities();
  /** Our own SVID was signed by a tainted authority: renew it at the next tick, whatever its age. */
  private ownSvidTainted = false;
  /** SVIDs being replaced because a tainted authority signed them: since when and how many, for the log line when done. */
  private taintReplacement: { since: number; svids: number; authorityIds: readonly string[] } | undefined;
  private readonly listeners = new Set<() => void>();
  private bundleState: Bundle | undefined;
  private bundleSequence = 0;
  /** The trust domain's CRLs (DER) for the Workload API's crl field, and the digest the CA gave them. */
  private crlState: readonly Buffer[] = [];
  private crlDigest = '';
  /** False once a CA of an older release refused the sync's `crl` parameter: sync then goes without it. */
  private askRevocations = true;
  /** Foreign trust domains' bundles for entries that federate with them (node-agent/federation.ts). */
  private readonly federated = new FederatedBundles();
  /** False once a CA of an older release refused the sync's `federated` parameter. */
  private askFederated = true;
  private revision = 0;
  private parents: string[] = [];
  private synced = false;
  /** Bumped on every change; views computed at an older version are stale. */
  private version = 0;
  /** Entitlements per distinct selector set, shared by every caller that has it. */
  private readonly views = new Map<string, CallerView>();
  /** Workload identity templates, for callers that match no entry. */
  private readonly templates: TemplateInstances;
  readonly discovery: DiscoveryLog;
  /**
   * The newest agent credentials the CA issued that the data dir does not hold yet (it was full or
   * read-only when they came); written on every rotation tick until a write succeeds.
   */
  private unpersisted: AgentCredentials | undefined;
  private readonly persistFailures = new RepeatGate();
  private joinTokenId: string | undefined;
  /** Failure streaks of the repeated calls to the CA: each backs off and is logged once, then summed up. */
  private readonly syncFailures: FailureStreak;
  private readonly rotationFailures: FailureStreak;
  private readonly renewalFailures: FailureStreak;
  /** Entries the CA refused to issue for, retried with their own backoff rather than every tick. */
  private readonly refusedEntries = new Map<string, { streak: FailureStreak; code: string | undefined; message?: string | undefined }>();
  /** Set when the CA refuses our SVID and we cannot attest again: the loops stop and run() rejects with it. */
  private refused: AgentRefusedError | undefined;
  private readonly stopLoops = new AbortController();
  /** When (by our clock) the newest agent SVID was received; undefined for the one we started with. */
  private newestReceivedAt: number | undefined;
  /** When a sync answer last arrived (our clock). */
  private lastSyncAt: number | undefined;
  /** The sync long-poll in flight, restarted when the agent switches SVIDs. */
  private currentPoll: AbortController | undefined;

  constructor(private readonly deps: AgentDeps) {
    this.discovery = new DiscoveryLog(deps.dataDir, deps.clock, deps.logger, { writeIntervalMs: deps.discoveryWriteIntervalMs });
    this.templates = new TemplateInstances(deps.trustDomain, deps.templateIdleMs);
    if (deps.credentialsUnpersisted) this.unpersisted = deps.client.credentials;
    this.joinTokenId = deps.joinTokenId;
    const backoff = { ...BACKOFF, jitter: deps.jitter ?? Math.random };
    this.syncFailures = new FailureStreak(backoff);
    this.rotationFailures = new FailureStreak(backoff);
    this.renewalFailures = new FailureStreak(backoff);
  }

  // ---- WorkloadApiPorts

  ready(): boolean {
    return this.synced && this.bundleState !== undefined;
  }

  /** What the agent's metrics report at each scrape (node-agent/metrics.ts). */
  gauges(): AgentGauges {
    let earliest: number | undefined;
    for (const s of this.svids.values()) if (earliest === undefined || s.notAfter < earliest) earliest = s.notAfter;
    return { identities: this.svids.size, earliestSvidExpiry: earliest, lastSyncAt: this.lastSyncAt, canMintJwt: this.health().serving && !this.syncFailures.failing };
  }

  /** Why the agent stopped, when the CA refused it and it cannot attest again. */
  refusal(): AgentRefusedError | undefined {
    return this.refused;
  }

  /** Serving: synced, and holding an agent SVID that has not expired (grpc.health.v1 on the socket). */
  health(): HealthState {
    if (this.refused) return { serving: false, reason: 'the CA no longer accepts this agent' };
    if (!this.ready()) return { serving: false, reason: 'not yet synced with the CA' };
    const { notAfter } = validityOf(this.deps.client.credentials.chainPem);
    if (notAfter <= this.deps.clock.now().getTime()) return { serving: false, reason: `the agent SVID expired at ${new Date(notAfter).toISOString()}` };
    return { serving: true };
  }

  trustDomain(): string {
    return this.deps.trustDomain;
  }

  bundle(trustDomain: string): Bundle | undefined {
    return trustDomain === this.deps.trustDomain ? this.bundleState : this.federated.get(trustDomain);
  }

  crls(): readonly Buffer[] {
    return this.crlState;
  }

  now(): Date {
    return this.deps.clock.now();
  }

  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  attestConnection(peer: PeerInfo): ConnectionAttestation {
    const caller = this.deps.identify(peer);
    let bound: { workload: Workload; key: string; selectors: ReadonlySet<string> } | undefined;
    /** The version at which the caller last passed its re-check (streams re-check once per change, not per stream). */
    let checkedAt = -1;
    /** Template identities this connection keeps alive. */
    let retained: string[] | undefined;
    const recheck = (): void => {
      caller.recheck();
      checkedAt = this.version;
    };
    return {
      workload: async () => {
        const list = await caller.selectors();
        recheck();
        bound ??= this.bind(list, () => {
          if (checkedAt !== this.version) recheck();
        });
        let view = this.view(bound.key, bound.selectors);
        if (view.entries.length === 0 && view.instances.length > 0) {
          // identities this connection uses, held while it lasts (a later call may add a template's)
          const added = view.instances.map((i) => i.id).filter((id) => !retained?.includes(id));
          if (added.length > 0) {
            this.templates.retain(added, this.deps.clock.now().getTime());
            retained = [...(retained ?? []), ...added];
          }
          // A caller new to a template gets its SVID in its first answer, not a PermissionDenied.
          await this.issueInstances(view.instances);
          view = this.view(bound.key, bound.selectors);
        }
        if (view.entries.length === 0 && view.snapshot.x509Svids.length === 0) this.discovery.record(peer, list, this.refusalOf(view));
        return bound.workload;
      },
      release: () => {
        caller.release();
        if (retained) this.templates.release(retained, this.deps.clock.now().getTime());
      },
    };
  }

  private bind(list: readonly string[], recheck: () => void): { workload: Workload; key: string; selectors: ReadonlySet<string> } {
    const selectors = new Set(list);
    const key = [...selectors].sort().join('\n');
    const workload: Workload = {
      snapshot: () => {
        recheck();
        return this.view(key, selectors).snapshot;
      },
      jwtSvids: async (audience, spiffeId) => {
        const version = this.version;
        // JSON: an audience may hold any character, the separator included
        const request = JSON.stringify([key, spiffeId ?? null, ...audience]);
        const known = this.jwtAnswers.get(request);
        if (known && known.version === version && this.stillCached(known)) return known.svids;
        const view = this.view(key, selectors);
        const svids: JwtSvidResult[] = [];
        const tokens: [string, CachedJwt][] = [];
        const seen = new Set<string>();
        const add = async (id: string, spiffeId: string, hint: string | null | undefined, mint: () => Promise<JwtSvidMessage>): Promise<void> => {
          seen.add(spiffeId);
          const cached = await this.jwtFor(id, audience, mint);
          tokens.push(cached);
          svids.push({ spiffeId, token: cached[1].token, hint: hint ?? undefined });
        };
        for (const e of view.entries) {
          if ((spiffeId && e.spiffeId !== spiffeId) || seen.has(e.spiffeId)) continue;
          await add(e.id, e.spiffeId, e.hint, () => this.deps.client.mintJwt(e.id, audience));
        }
        for (const t of view.instances) {
          if ((spiffeId && t.spiffeId !== spiffeId) || seen.has(t.spiffeId) || !this.svids.has(t.id)) continue;
          await add(t.id, t.spiffeId, t.hint, () => this.deps.client.mintJwtByTemplate(t.templateId, t.selectors, audience));
        }
        // not when the version moved while minting: the answer may already be out of date
        if (this.version === version) {
          this.jwtAnswers.delete(request);
          this.jwtAnswers.set(request, { version, svids, tokens });
          if (this.jwtAnswers.size > MAX_CACHED_JWTS) this.jwtAnswers.delete(this.jwtAnswers.keys().next().value!);
        }
        return svids;
      },
    };
    return { workload, key, selectors };
  }

  /**
   * The entries whose selectors are all among the caller's, and what they hold now; when there are
   * none, the identities the templates render for the caller (an explicit entry wins). Memoized per version.
   */
  private view(key: string, selectors: ReadonlySet<string>): CallerView {
    const cached = this.views.get(key);
    if (cached && cached.version === this.version) return cached;
    const entries = [...this.entries.values()].filter((e) => e.selectors.every((s) => selectors.has(s))).sort((a, b) => a.id.localeCompare(b.id));
    const resolved = entries.length === 0 && this.templates.size > 0 ? this.templates.resolve(selectors, this.deps.clock.now().getTime()) : { instances: [], refusals: [] };
    const held = [...entries, ...resolved.instances];
    const snapshot: WorkloadSnapshot = {
      x509Svids: held.flatMap((e) => {
        const svid = this.svids.get(e.id);
        return svid ? [svid.identity] : [];
      }),
      federatedTrustDomains: [...new Set(held.flatMap((e) => e.federatesWith))],
    };
    if (this.views.size >= 4096 && !cached) this.views.clear(); // bounded: many distinct callers just recompute
    const view: CallerView = { version: this.version, entries, instances: resolved.instances, refusals: resolved.refusals, snapshot };
    this.views.set(key, view);
    return view;
  }

  /** Why a caller with this view has no identity, for discovery: template refusals, or the CA's refusal of its identities. */
  private refusalOf(view: CallerView): string | undefined {
    const reasons = [...view.refusals];
    for (const i of view.instances) {
      const refused = this.refusedEntries.get(i.id);
      if (refused) reasons.push(`the CA refused ${i.spiffeId} (template ${i.templateId}): ${refused.code ?? 'error'}: ${refused.message ?? ''}`);
    }
    return reasons.length > 0 ? reasons.join('; ') : undefined;
  }

  /** Issues what these template identities lack now (a few rounds: a rotation in flight may not include them). */
  private async issueInstances(instances: readonly TemplateInstance[]): Promise<void> {
    for (let round = 0; round < 3; round++) {
      if (instances.every((i) => this.svids.has(i.id) || this.refusedEntries.has(i.id) || !this.templates.get(i.id))) return;
      await this.rotate().catch(() => undefined);
    }
  }

  /** The cached JWT-SVID for this identity and audience (its cache key too), minted when there is none or it is past half-life. */
  private async jwtFor(id: string, audience: readonly string[], mint: () => Promise<JwtSvidMessage>): Promise<[string, CachedJwt]> {
    const key = `${id}\u0000${JSON.stringify([...audience].sort())}`;
    const now = this.deps.clock.now().getTime();
    const cached = this.jwtCache.get(key);
    if (cached && cached.renewAt > now) return [key, cached];
    const minted = await mint();
    const parsed = parseJwtSvidInsecure(minted.token);
    const claims = parsed.claims as { iat?: number; exp: number };
    const iat = (claims.iat ?? now / 1000) * 1000;
    const kid = String((parsed.header as { kid?: unknown }).kid ?? '');
    const made: CachedJwt = { token: minted.token, kid, renewAt: this.tainted.jwtKid(kid) ? 0 : iat + (claims.exp * 1000 - iat) / 2 };
    this.jwtCache.set(key, made);
    if (this.jwtCache.size > MAX_CACHED_JWTS) this.jwtCache.delete(this.jwtCache.keys().next().value!);
    return [key, made];
  }

  /** Whether every token of an answer is still the cached one (not dropped, tainted or renewed) and before half-life: what jwtFor would return. */
  private stillCached(answer: JwtAnswer): boolean {
    const now = this.deps.clock.now().getTime();
    return answer.tokens.every(([key, jwt]) => jwt.renewAt > now && this.jwtCache.get(key) === jwt);
  }

  private changed(): void {
    this.version++;
    for (const l of [...this.listeners]) l();
  }

  // ---- loops

  /**
   * Runs until `signal` aborts: entry sync (long-poll), SVID rotation, agent SVID renewal. Rejects with
   * AgentRefusedError when the CA stops accepting the agent and it cannot attest again.
   */
  async run(signal: AbortSignal): Promise<void> {
    const stop = (): void => this.stopLoops.abort();
    signal.addEventListener('abort', stop, { once: true });
    try {
      await Promise.all([this.syncLoop(this.stopLoops.signal), this.rotationLoop(this.stopLoops.signal)]);
    } finally {
      signal.removeEventListener('abort', stop);
    }
    if (this.refused) throw this.refused;
  }

  private async syncLoop(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      const poll = new AbortController();
      const stopPoll = (): void => poll.abort();
      signal.addEventListener('abort', stopPoll, { once: true });
      this.currentPoll = poll;
      try {
        const res = await this.deps.client.sync(this.revision, this.bundleSequence, this.synced ? 30 : 0, poll.signal, this.askRevocations ? this.crlDigest : undefined, this.askFederated ? this.federated.digest : undefined);
        this.recovered(this.syncFailures, 'agent.sync_recovered', 'sync with the CA works again');
        const parentsChanged = this.synced && !res.full && res.parents.join() !== this.parents.join();
        if (parentsChanged) {
          this.revision = 0; // our aliases changed: take the complete set again
          continue;
        }
        this.apply(res);
        await this.rotate().catch(() => undefined); // its failures have their own streak
      } catch (err) {
        if (signal.aborted) return;
        if (poll.signal.aborted) continue; // restarted to present a new SVID (see useCredentials)
        if (this.askFederated && err instanceof CaError && err.status === 400 && err.code === 'invalid_request') {
          // A CA that predates federation refuses the parameter (the newest one, so dropped first).
          this.askFederated = false;
          this.deps.logger.warn({ event: 'agent.federation_unsupported', reason: err.message }, 'the CA does not send foreign bundles (an older release); syncing without them');
          continue;
        }
        if (this.askRevocations && err instanceof CaError && err.status === 400 && err.code === 'invalid_request') {
          // A CA that predates revocation refuses the parameter; sync still works without it.
          this.askRevocations = false;
          this.deps.logger.warn({ event: 'agent.revocations_unsupported', reason: err.message }, 'the CA does not send revocations (an older release); syncing without them');
          continue;
        }
        let failure = err;
        if (isRefusal(err)) {
          if (!this.deps.reattest) {
            this.refuse(err);
            return;
          }
          try {
            await this.reattest(err);
            this.recovered(this.syncFailures, 'agent.sync_recovered', 'sync with the CA works again');
            continue;
          } catch (again) {
            failure = again;
          }
        }
        // Keep serving what we hold until it expires; back off, and say so once per streak.
        const retryInMs = this.failed(this.syncFailures, failure, isRefusal(err) ? 'agent.reattest_failed' : 'agent.sync_failed', 'sync with the CA failed; serving cached state, will retry');
        await sleep(retryInMs, undefined, { signal }).catch(() => undefined);
      } finally {
        signal.removeEventListener('abort', stopPoll);
        if (this.currentPoll === poll) this.currentPoll = undefined;
      }
    }
  }

  /**
   * Switches to a new agent SVID and restarts the sync long-poll on a connection that presents it: the
   * CA takes the new serial as current (and stops accepting the old one) only once it is presented.
   */
  private useCredentials(creds: AgentCredentials): void {
    this.deps.client.useCredentials(creds);
    this.currentPoll?.abort();
  }

  /** The CA refuses our SVID and nothing here can attest again: stop, saying what the operator must do. */
  private refuse(err: CaError): void {
    if (this.refused) return;
    this.refused = new AgentRefusedError(
      `the CA no longer accepts this agent's SVID (${this.deps.spiffeId}: ${err.code}; ${err.code === 'svid_revoked' ? 'its SVID was revoked' : 'it was evicted, or its SVID expired or was superseded'}): start the agent with a new join token (--join-token, --join-token-file or CAIRN_JOIN_TOKEN)`,
    );
    this.deps.logger.error({ event: 'agent.refused', spiffeId: this.deps.spiffeId, code: err.code, reason: err.message }, 'the CA no longer accepts this agent; it needs a new join token');
    this.stopLoops.abort();
  }

  /** One failure of a repeated operation: warn on the first of a streak, debug after; returns the backoff. */
  private failed(streak: FailureStreak, err: unknown, event: string, msg: string): number {
    const f = streak.failed(this.deps.clock.now().getTime());
    const fields = { event, err: (err as Error).message, code: err instanceof CaError ? err.code : undefined, attempts: f.attempts, retryInMs: f.retryInMs };
    if (f.first) this.deps.logger.warn(fields, msg);
    else this.deps.logger.debug(fields, msg);
    return f.retryInMs;
  }

  /** A success: if it ends a failure streak, one line with how long it lasted and how many attempts failed. */
  private recovered(streak: FailureStreak, event: string, msg: string, extra: Record<string, unknown> = {}): StreakEnd | undefined {
    const end = streak.succeeded(this.deps.clock.now().getTime());
    if (end) this.deps.logger.info({ event, failedForMs: end.failedForMs, failedAttempts: end.attempts, ...extra }, msg);
    return end;
  }

  private apply(res: Awaited<ReturnType<CaClient['sync']>>): void {
    let dirty = false;
    if (res.full) {
      for (const id of this.entries.keys()) if (!res.entries.some((e) => e.id === id)) res.removed.push(id);
    }
    for (const id of res.removed) {
      dirty = this.entries.delete(id) || dirty;
      dirty = this.svids.delete(id) || dirty;
    }
    const templates = this.templates.apply(res.templates ?? [], res.removedTemplates ?? [], res.full);
    for (const id of templates.dropped) this.svids.delete(id);
    dirty = templates.dirty || dirty;
    for (const e of res.entries) {
      // A changed entry keeps serving its current SVID until the replacement is issued (rotate()
      // treats a revision change as due): dropping it first would end open streams with
      // PermissionDenied for the moment in between.
      this.entries.set(e.id, e);
      dirty = true;
    }
    if (res.bundle) {
      const newlyTainted = this.tainted.update(res.bundle.taintedAuthorities ?? []);
      this.bundleState = {
        trustDomain: this.deps.trustDomain,
        // Tainted CAs stay: peers' SVIDs they signed must keep verifying until they are replaced.
        x509Authorities: res.bundle.x509Authorities.map((b) => Buffer.from(b, 'base64')),
        // Tainted JWT keys go: neither ValidateJWTSVID nor a workload validating with FetchJWTBundles
        // accepts their tokens any more (this agent re-mints what it cached at once).
        jwtAuthorities: res.bundle.jwtAuthorities
          .filter((a) => !this.tainted.jwtKid(a.kid))
          .map((a) => ({ kid: a.kid, jwk: a.jwk as unknown as Bundle['jwtAuthorities'][number]['jwk'] })),
        sequence: res.bundle.sequence,
      };
      this.bundleSequence = res.bundle.sequence;
      if (newlyTainted.length > 0) this.replaceTainted(newlyTainted);
      dirty = true;
    }
    if (res.revocation) {
      this.crlDigest = res.revocation.digest;
      this.crlState = res.revocation.crls.map((b) => Buffer.from(b, 'base64'));
      const revoked = new Set(res.revocation.revokedSerials);
      for (const [entryId, held] of this.svids) {
        if (!revoked.has(held.serial) || held.revoked) continue;
        // Due now: the sync loop's rotate() right after this replaces it on every open stream.
        this.svids.set(entryId, { ...held, revoked: true, renewAt: 0 });
        this.deps.logger.warn({ event: 'agent.svid_revoked', entryId, spiffeId: held.identity.spiffeId, serial: held.serial }, 'the CA revoked an SVID this agent holds; replacing it');
      }
      dirty = true;
    }
    if (res.federated && this.federated.apply(res.federated, this.deps.trustDomain)) {
      this.deps.logger.info({ event: 'agent.federated_bundles', trustDomains: this.federated.trustDomains() }, 'foreign trust bundles updated');
      dirty = true;
    }
    this.parents = res.parents;
    this.revision = res.revision;
    this.synced = true;
    this.lastSyncAt = this.deps.clock.now().getTime();
    if (dirty) this.changed();
  }

  /**
   * Newly tainted authorities: every SVID whose chain one of them signed becomes due now (rotate()
   * re-issues it with the CA's active key and the streams get it), our own SVID too, and cached
   * JWT-SVIDs they signed are dropped.
   */
  private replaceTainted(ids: readonly string[]): void {
    let svids = 0;
    for (const held of this.svids.values()) {
      if (held.renewAt !== 0 && this.tainted.signerOf(held.identity.chain)) {
        held.renewAt = 0;
        svids++;
      }
    }
    let jwts = 0;
    for (const [key, cached] of this.jwtCache) {
      if (this.tainted.jwtKid(cached.kid)) {
        this.jwtCache.delete(key);
        jwts++;
      }
    }
    const own = this.deps.client.credentials;
    this.ownSvidTainted = this.tainted.signerOf([new X509Certificate(own.chainPem)]) !== undefined;
    if (svids > 0 || this.ownSvidTainted) {
      const prior = this.taintReplacement;
      this.taintReplacement = { since: prior?.since ?? this.deps.clock.now().getTime(), svids: svids + (prior?.svids ?? 0), authorityIds: [...(prior?.authorityIds ?? []), ...ids] };
    }
    this.deps.logger.warn(
      { event: 'agent.authority_tainted', authorityIds: ids, svidsToReissue: svids, jwtSvidsDropped: jwts, ownSvid: this.ownSvidTainted },
      'authorities were tainted: re-issuing what they signed',
    );
  }

  private async rotationLoop(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      await sleep(1000, undefined, { signal }).catch(() => undefined);
      if (signal.aborted || !this.synced) continue;
      this.dropExpired();
      this.dropIdleInstances();
      const now = this.deps.clock.now().getTime();
      // Separately: workload SVIDs failing to issue must not hold back the agent's own renewal.
      if (this.rotationFailures.due(now)) await this.rotate().catch(() => undefined);
      if (signal.aborted || !this.renewalFailures.due(now)) continue;
      try {
        if (await this.renewOwnSvidIfDue()) this.recovered(this.renewalFailures, 'agent.renewal_recovered', 'agent SVID renewal works again');
      } catch (err) {
        if (isRefusal(err) && !this.deps.reattest) this.refuse(err);
        else this.failed(this.renewalFailures, err, 'agent.renewal_failed', 'agent SVID renewal failed; will retry');
      }
      this.noteTaintReplaced();
    }
  }

  /** Template identities no caller has used for a while: stop renewing them (a new call renders and issues again). */
  private dropIdleInstances(): void {
    const dropped = this.templates.pruneIdle(this.deps.clock.now().getTime());
    for (const id of dropped) this.svids.delete(id);
    if (dropped.length > 0) this.changed();
  }

  /** An SVID past its notAfter is useless to a workload and wrong to hand out: stop serving it. */
  private dropExpired(): void {
    const now = this.deps.clock.now().getTime();
    let dropped = 0;
    let revoked = 0;
    for (const [id, held] of this.svids) {
      // A revoked SVID whose replacement could not be issued (no rotation in flight) is not served on.
      const unreplaced = held.revoked === true && !this.rotating;
      if (held.notAfter > now && !unreplaced) continue;
      this.svids.delete(id);
      if (held.notAfter > now) revoked++;
      else dropped++;
    }
    if (dropped > 0) this.deps.logger.warn({ dropped }, 'SVIDs expired before they could be renewed (is the CA reachable?)');
    if (revoked > 0) this.deps.logger.warn({ event: 'agent.revoked_dropped', dropped: revoked }, 'revoked SVIDs dropped before a replacement could be issued; retrying');
    if (dropped > 0 || revoked > 0) this.changed();
  }

  private rotating: Promise<void> | undefined;

  /**
   * Issues SVIDs for entries that have none or are past their renewal time, in batches. One attempt at
   * a time; failures back off and are logged once per streak (callers may ignore the rejection).
   */
  rotate(): Promise<void> {
    this.rotating ??= this.rotateNow()
      .then(
        () => void this.recovered(this.rotationFailures, 'agent.rotation_recovered', 'SVID rotation works again'),
        (err: unknown) => {
          if (isRefusal(err) && !this.deps.reattest) this.refuse(err);
          else this.failed(this.rotationFailures, err, 'agent.rotation_failed', 'SVID rotation failed; will retry');
          throw err;
        },
      )
      .finally(() => (this.rotating = undefined));
    return this.rotating;
  }

  private async rotateNow(): Promise<void> {
    const now = this.deps.clock.now().getTime();
    for (const id of this.refusedEntries.keys()) if (!this.entries.has(id) && !this.templates.get(id)) this.refusedEntries.delete(id);
    const due = [...this.entries.values()].filter((e) => {
      const held = this.svids.get(e.id);
      if (this.refusedEntries.get(e.id)?.streak.due(now) === false) return false;
      return !held || held.renewAt <= now || held.revision !== e.revision;
    });
    for (let i = 0; i < due.length; i += 500) {
      const batch = due.slice(i, i + 500).map((e) => ({ entry: e, key: generateKeyAndCsr('ec-p256') }));
      const res = await this.deps.client.issue(batch.map((b) => ({ entryId: b.entry.id, csr: b.key.csr.toString('base64') })));
      res.results.forEach((r, k) => {
        const { entry, key } = batch[k]!;
        this.hold(entry.id, r, key, entry.hint, entry.revision);
      });
      if (batch.length > 0) this.changed();
    }
    const dueInstances = [...this.templates.all()].filter((t) => {
      const held = this.svids.get(t.id);
      if (this.refusedEntries.get(t.id)?.streak.due(now) === false) return false;
      return !held || held.renewAt <= now || held.revision !== t.revision;
    });
    for (let i = 0; i < dueInstances.length; i += 500) {
      const batch = dueInstances.slice(i, i + 500).map((t) => ({ instance: t, key: generateKeyAndCsr('ec-p256') }));
      const res = await this.deps.client.issueByTemplate(batch.map((b) => ({ templateId: b.instance.templateId, selectors: b.instance.selectors, csr: b.key.csr.toString('base64') })));
      res.results.forEach((r, k) => {
        const { instance, key } = batch[k]!;
        // dropped meanwhile (its template deleted, or idle): do not hold an SVID nobody will serve
        if (this.templates.get(instance.id) !== instance) return;
        if (r.svid && r.svid.spiffeId !== instance.spiffeId) {
          // the CA renders on its own; a different answer means the agent and CA disagree on the template
          this.entryRefused(instance.id, 'template_mismatch', `the CA issued ${r.svid.spiffeId} where this agent rendered ${instance.spiffeId}`);
          return;
        }
        this.hold(instance.id, r, key, instance.hint, instance.revision);
      });
      if (batch.length > 0) this.changed();
    }
  }

  /** Keeps an SVID the CA issued (with the key we generated for it), or notes the CA's refusal. */
  private hold(id: string, r: { svid?: Omit<X509SvidMessage, 'bundle'> | undefined; error?: { code: string; message: string } | undefined }, key: ReturnType<typeof generateKeyAndCsr>, hint: string | null, revision: number): void {
    if (!r.svid) {
      this.entryRefused(id, r.error?.code, r.error?.message);
      return;
    }
    const refused = this.refusedEntries.get(id);
    if (refused) {
      this.refusedEntries.delete(id);
      const end = refused.streak.succeeded(this.deps.clock.now().getTime());
      this.deps.logger.info({ event: 'agent.entry_issued_again', entryId: id, failedForMs: end?.failedForMs, failedAttempts: end?.attempts }, 'the CA issues an SVID for an entry it had refused');
    }
    const chain = r.svid.chain.map((c) => Buffer.from(c, 'base64'));
    const leaf = new X509Certificate(chain[0]!);
    const notBefore = new Date(leaf.validFrom).getTime();
    const notAfter = new Date(leaf.validTo).getTime();
    // Signed before the CA switched keys but delivered after the taint reached us: due again at once.
    const tainted = !this.tainted.empty && this.tainted.signerOf([leaf, ...chain.slice(1)]) !== undefined;
    this.svids.set(id, {
      identity: { spiffeId: r.svid.spiffeId, chain, privateKey: key.privateKey.export({ format: 'der', type: 'pkcs8' }), hint: hint ?? undefined },
      serial: leaf.serialNumber.toLowerCase(),
      revision,
      notBefore,
      notAfter,
      renewAt: tainted ? 0 : renewalTime(notBefore, notAfter, (this.deps.jitter ?? Math.random)()),
    });
  }

  /** Once nothing we hold or serve is signed by a tainted authority (our own SVID included, in use), say so once. */
  private noteTaintReplaced(): void {
    if (!this.taintReplacement || [...this.svids.values()].some((h) => h.renewAt === 0)) return;
    if (this.tainted.signerOf([new X509Certificate(this.deps.client.credentials.chainPem)]) !== undefined) return;
    const { since, svids, authorityIds } = this.taintReplacement;
    this.taintReplacement = undefined;
    this.deps.logger.info(
      { event: 'agent.tainted_replaced', authorityIds, svids, tookMs: this.deps.clock.now().getTime() - since },
      'every SVID signed by a tainted authority was replaced',
    );
  }

  /** The CA refused one entry: retry it with its own backoff; log the first refusal (and a new code). */
  private entryRefused(entryId: string, code: string | undefined, message: string | undefined): void {
    let held = this.refusedEntries.get(entryId);
    const first = !held || held.code !== code;
    if (!held || held.code !== code) this.refusedEntries.set(entryId, (held = { streak: new FailureStreak({ ...BACKOFF, jitter: this.deps.jitter ?? Math.random }), code }));
    held.message = message;
    const f = held.streak.failed(this.deps.clock.now().getTime());
    const fields = { event: 'agent.entry_refused', entryId, code, reason: message, attempts: f.attempts, retryInMs: f.retryInMs };
    if (first) this.deps.logger.warn(fields, 'the CA refused an SVID for an entry');
    else this.deps.logger.debug(fields, 'the CA refused an SVID for an entry');
  }

  /**
   * The CA refused our SVID (the node was evicted, or the SVID expired or was superseded while we were
   * cut off): attest again with fresh evidence and carry on with the same workloads and streams.
   */
  private async reattest(refusal: CaError): Promise<void> {
    const next = await this.deps.reattest!();
    if (next.spiffeId !== this.deps.spiffeId) {
      throw new Error(`attesting again gave ${next.spiffeId}, not ${this.deps.spiffeId}; restart the agent to serve as the new identity`);
    }
    const creds: AgentCredentials = { caUrl: next.caUrl, authorityPem: next.authorityPem, chainPem: next.chainPem, keyPem: next.keyPem };
    this.joinTokenId = next.joinTokenId;
    this.newestReceivedAt = this.deps.clock.now().getTime();
    this.useCredentials(creds);
    this.unpersisted = undefined;
    this.deps.logger.info({ event: 'agent.reattested', spiffeId: next.spiffeId, refusal: refusal.code, expiresAt: new Date(validityOf(creds.chainPem).notAfter).toISOString() }, 'the CA refused our SVID; attested again');
    // The old SVID is refused anyway: use the new one even if it cannot be written (a restart attests again).
    this.persistOwnSvid(creds);
  }

  /** Renews the agent's own SVID at half-life, then switches to it once it is persisted; whether it asked the CA. */
  private async renewOwnSvidIfDue(): Promise<boolean> {
    // Due is judged on the newest SVID held: one renewed but stuck in memory (disk full) is not renewed
    // again at every tick, only when it too reaches half-life.
    const newest = this.unpersisted ?? this.deps.client.credentials;
    const { notBefore, notAfter } = validityOf(newest.chainPem);
    const now = this.deps.clock.now().getTime();
    const halfLife = (notAfter - notBefore) / 2;
    const wasTainted = this.ownSvidTainted;
    // Also half a lifetime after we received it, by our own clock: a clock running ahead of the CA's
    // would otherwise find every fresh SVID past half-life and renew it at every tick. A tainted signer
    // makes it due at once.
    const due = wasTainted || (now >= notBefore + halfLife && (this.newestReceivedAt === undefined || now >= this.newestReceivedAt + halfLife));
    if (due) {
      const key = generateKeyAndCsr('ec-p256');
      const svid = await this.deps.client.renew(key.csr.toString('base64'));
      this.unpersisted = { ...newest, chainPem: chainPemOf(svid), keyPem: key.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString() };
      this.newestReceivedAt = this.deps.clock.now().getTime();
      this.ownSvidTainted = this.tainted.signerOf([new X509Certificate(this.unpersisted.chainPem)]) !== undefined;
      if (wasTainted && !this.ownSvidTainted) this.deps.logger.info({ event: 'agent_svid.reissued', expiresAt: new Date(validityOf(this.unpersisted.chainPem).notAfter).toISOString() }, 'the agent SVID signed by a tainted authority was replaced');
    }
    if (this.unpersisted) this.persistOwnSvid(this.unpersisted);
    return due;
  }

  /**
   * Writes the agent's newest SVID to the data dir and only then uses it. The CA keeps accepting the
   * current serial until the new one is presented, so staying on the current SVID while the disk is
   * full or read-only costs nothing; switching to one we could not write down would leave on disk an
   * SVID the CA then calls superseded, and a restart would need a new join token. Only when the current
   * SVID is about to expire does the unpersisted one take over: the agent keeps working, and the file's
   * SVID would be useless after a restart anyway.
   */
  private persistOwnSvid(next: AgentCredentials): void {
    const now = this.deps.clock.now().getTime();
    try {
      const { caUrl, authorityPem, chainPem, keyPem } = next;
      saveAgentState(this.deps.dataDir, { spiffeId: this.deps.spiffeId, caUrl, authorityPem, chainPem, keyPem, ...(this.joinTokenId ? { joinTokenId: this.joinTokenId } : {}) });
    } catch (err) {
      let inUse = this.deps.client.credentials;
      const current = validityOf(inUse.chainPem);
      if (inUse !== next && current.notAfter - now <= (current.notAfter - current.notBefore) / 10) {
        this.useCredentials(next);
        inUse = next;
      }
      const code = errnoCode(err) ?? (err as Error).message;
      if (!this.persistFailures.shouldLog(`${code}:${inUse === next}`, now)) return;
      const fields = { event: 'agent_svid.persist_failed', dataDir: this.deps.dataDir, code: errnoCode(err), reason: describeWriteError(err), retryEveryMs: 1000 };
      if (inUse === next) {
        this.deps.logger.error({ ...fields, expiresAt: new Date(validityOf(next.chainPem).notAfter).toISOString() }, 'could not write the agent SVID in use to the data dir: a restart before the write succeeds needs a new join token; retrying');
      } else {
        this.deps.logger.error({ ...fields, currentExpiresAt: new Date(current.notAfter).toISOString() }, 'could not write the renewed agent SVID to the data dir: still using the current one, which the CA accepts until the new one is presented; retrying');
      }
      return;
    }
    this.unpersisted = undefined;
    this.persistFailures.reset();
    clearPendingAttestationKey(this.deps.dataDir); // a first attestation whose save failed is now complete
    const fields = { spiffeId: this.deps.spiffeId, expiresAt: new Date(validityOf(next.chainPem).notAfter).toISOString() };
    if (this.deps.client.credentials === next) {
      this.deps.logger.info({ ...fields, event: 'agent_svid.persisted' }, 'the agent SVID in use is now written to the data dir');
      return;
    }
    this.useCredentials(next);
    this.deps.logger.info(fields, 'agent SVID renewed');
  }
}

function validityOf(chainPem: string): { notBefore: number; notAfter: number } {
  const leaf = new X509Certificate(chainPem);
  return { notBefore: new Date(leaf.validFrom).getTime(), notAfter: new Date(leaf.validTo).getTime() };
}

