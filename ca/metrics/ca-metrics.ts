import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

/**
 * The CA's Prometheus metrics (prom-client), one registry per CA instance: tests run several CAs in
 * one process, and nothing here is global. Services see only the narrow ports below.
 */

export type SvidKind = 'x509' | 'jwt';

/**
 * Issuance: call when work starts; call what it returns with each outcome ("ok" or an error code) and
 * how many SVIDs had it. The first call ends the timing.
 */
export interface IssuanceMetrics {
  issuance(kind: SvidKind, trustDomain: string): (result: string, count?: number) => void;
}

export interface SyncMetrics {
  /** A sync long-poll began; the function returned marks its end. */
  pollStarted(): () => void;
  /** A sync answer delivered entry changes `seconds` after the newest of them was committed. */
  delivered(seconds: number): void;
}

export interface RotationMetrics {
  rotationPass(ok: boolean): void;
}

/** One answered HTTP request, as the app's onResponse hook sees it. */
export interface HttpOutcome {
  readonly method: string;
  /** The route as registered (`/v1/entries/:id`), or undefined for no route. */
  readonly route: string | undefined;
  readonly access: string | undefined;
  readonly status: number;
  /** The error code answered, if any. */
  readonly code: string | undefined;
  /** The admin caller's role, when one authenticated. */
  readonly role: string | undefined;
}

export interface HttpMetrics {
  response(outcome: HttpOutcome): void;
}

export type CaMetricsPorts = IssuanceMetrics & SyncMetrics & RotationMetrics & HttpMetrics;

/** Read at each scrape; a failing source leaves its metrics out of that scrape. */
export interface CaGaugeSources {
  auditLog(): Promise<{ readonly size: number; readonly pending: number; readonly checkpoint: { readonly size: number; readonly createdAt: Date } | undefined }>;
  activeAuthorities(): Promise<readonly { readonly trustDomain: string; readonly kind: string; readonly notAfter: Date; readonly activatedAt: Date | undefined }[]>;
  /** Trust domains with an offline upstream: when each needs an upstream-signed successor CA. */
  offlineSuccessors?(): Promise<readonly { readonly trustDomain: string; readonly dueAt: Date }[]>;
}

/** Attestation and token-redemption routes: which method each is, and whether it spends a token. */
const ATTESTATION_ROUTES: Readonly<Record<string, { readonly method: string; readonly token: boolean }>> = {
  'POST /agent/v1/attest': { method: 'join_token', token: true },
  'POST /agent/v1/attest/k8s-psat': { method: 'k8s_psat', token: false },
  'POST /agent/v1/attest/x509pop': { method: 'x509pop', token: false },
  'POST /device/v1/redeem': { method: 'device_token', token: true },
};

const resultOf = (o: HttpOutcome): string => (o.status < 400 ? 'ok' : (o.code ?? `http_${o.status}`));

const seconds = (start: bigint): number => Number(process.hrtime.bigint() - start) / 1e9;

/**
 * One read per scrape however many gauges use it: a scrape collects its gauges concurrently, so they
 * share the read in flight. Scrapes need no credential; each must cost a bounded few queries.
 */
function perScrape<T>(read: () => Promise<T>): () => Promise<T> {
  let inFlight: Promise<T> | undefined;
  return () => {
    inFlight ??= read().finally(() => {
      inFlight = undefined;
    });
    return inFlight;
  };
}

export class CaMetrics implements CaMetricsPorts {
  readonly registry = new Registry();
  private readonly svids: Counter<'kind' | 'trust_domain' | 'result'>;
  private readonly issuanceSeconds: Histogram<'kind'>;
  private readonly attestations: Counter<'method' | 'result'>;
  private readonly redemptions: Counter<'result'>;
  private readonly adminRequests: Counter<'route' | 'role' | 'status'>;
  private readonly connected: Gauge;
  private readonly syncLag: Histogram;
  private readonly rotationPasses: Counter<'result'>;
  private readonly rotationSuccess: Gauge;

  /** `process`: also the client library's process_* and nodejs_* metrics (once per process: the CA's own). */
  constructor(given: CaGaugeSources, options: { readonly process?: boolean } = {}) {
    const sources: CaGaugeSources = { activeAuthorities: perScrape(() => given.activeAuthorities()), auditLog: perScrape(() => given.auditLog()) };
    const registers = [this.registry];
    if (options.process) collectDefaultMetrics({ register: this.registry });
    this.svids = new Counter({ name: 'cairn_svids_issued_total', help: 'SVIDs issued, by kind (x509, jwt), trust domain and result (ok, or the error code)', labelNames: ['kind', 'trust_domain', 'result'], registers });
    this.issuanceSeconds = new Histogram({
      name: 'cairn_svid_issuance_seconds',
      help: 'Time to issue an X.509-SVID batch (signing and inventory) or mint a JWT-SVID',
      labelNames: ['kind'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers,
    });
    this.attestations = new Counter({ name: 'cairn_attestations_total', help: 'Node and device attestations, by method and result (ok, or the error code)', labelNames: ['method', 'result'], registers });
    this.redemptions = new Counter({ name: 'cairn_token_redemptions_total', help: 'Join and device token redemptions, by result (ok, or the error code)', labelNames: ['result'], registers });
    this.adminRequests = new Counter({ name: 'cairn_admin_requests_total', help: 'Admin API requests, by route, the caller\'s role (none: not authenticated) and HTTP status', labelNames: ['route', 'role', 'status'], registers });
    this.connected = new Gauge({ name: 'cairn_sync_connected_agents', help: 'Agent sync long-polls open on this replica (about one per connected agent)', registers });
    this.syncLag = new Histogram({
      name: 'cairn_sync_lag_seconds',
      help: 'From an entry change committing to a sync answer carrying it to an agent',
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers,
    });
    this.rotationPasses = new Counter({ name: 'cairn_authority_rotation_passes_total', help: 'Passes of the authority rotation loop over every trust domain, by result (ok, error)', labelNames: ['result'], registers });
    this.rotationSuccess = new Gauge({ name: 'cairn_authority_rotation_last_success_timestamp_seconds', help: 'When the rotation loop last completed a pass on this replica (Unix time)', registers });
    // Read from the store at each scrape, so every replica reports the shared truth.
    const authorityGauge = (name: string, help: string, pick: (a: { notAfter: Date; activatedAt: Date | undefined }) => Date | undefined): void => {
      new Gauge({
        name,
        help,
        labelNames: ['trust_domain', 'kind'],
        registers,
        async collect() {
          const list = await sources.activeAuthorities();
          this.reset();
          for (const a of list) {
            const at = pick(a);
            if (at) this.set({ trust_domain: a.trustDomain, kind: a.kind }, at.getTime() / 1000);
          }
        },
      });
    };
    const auditGauge = (name: string, help: string, pick: (a: Awaited<ReturnType<CaGaugeSources['auditLog']>>) => number | undefined): void => {
      new Gauge({
        name,
        help,
        registers,
        async collect() {
          const v = pick(await sources.auditLog());
          if (v === undefined) this.reset();
          else this.set(v);
        },
      });
    };
    auditGauge('cairn_audit_log_entries', 'Entries in the audit log (integrated into the Merkle tree)', (a) => a.size);
    auditGauge('cairn_audit_pending_entries', 'Audit entries appended but not yet integrated (numbered) into the tree', (a) => a.pending);
    auditGauge('cairn_audit_checkpoint_size', 'Tree size of the newest signed checkpoint', (a) => a.checkpoint?.size);
    auditGauge('cairn_audit_checkpoint_timestamp_seconds', 'When the newest checkpoint was signed (Unix time; absent before the first)', (a) => (a.checkpoint ? a.checkpoint.createdAt.getTime() / 1000 : undefined));
    authorityGauge('cairn_authority_not_after_timestamp_seconds', "Expiry of each trust domain's active authority, by kind (x509, jwt) (Unix time)", (a) => a.notAfter);
    if (given.offlineSuccessors) {
      const successors = given.offlineSuccessors.bind(given);
      new Gauge({
        name: 'cairn_authority_successor_due_timestamp_seconds',
        help: 'Trust domains with an offline upstream authority: when an upstream-signed successor X.509 CA is due (Unix time; alert when it is in the past: cairn authority list shows whether one was imported)',
        labelNames: ['trust_domain'],
        registers,
        async collect() {
          const list = await successors();
          this.reset();
          for (const s of list) this.set({ trust_domain: s.trustDomain }, s.dueAt.getTime() / 1000);
        },
      });
    }
    authorityGauge('cairn_authority_last_rotation_timestamp_seconds', "When each trust domain's active authority started signing, by kind (Unix time)", (a) => a.activatedAt);

  }
  issuance(kind: SvidKind, trustDomain: string): (result: string, count?: number) => void {
    const start = process.hrtime.bigint();
    let timed = false;
    return (result, count = 1) => {
      if (!timed) this.issuanceSeconds.observe({ kind }, seconds(start));
      timed = true;
      if (count > 0) this.svids.inc({ kind, trust_domain: trustDomain, result }, count);
    };
  }

  pollStarted(): () => void {
    this.connected.inc();
    let open = true;
    return () => {
      if (open) this.connected.dec();
      open = false;
    };
  }

  delivered(lagSeconds: number): void {
    this.syncLag.observe(Math.max(0, lagSeconds));
  }

  rotationPass(ok: boolean): void {
    this.rotationPasses.inc({ result: ok ? 'ok' : 'error' });
    if (ok) this.rotationSuccess.setToCurrentTime();
  }

  response(o: HttpOutcome): void {
    const attestation = o.route === undefined ? undefined : ATTESTATION_ROUTES[`${o.method} ${o.route}`];
    if (attestation) {
      this.attestations.inc({ method: attestation.method, result: resultOf(o) });
      if (attestation.token) this.redemptions.inc({ result: resultOf(o) });
    }
    // Unmatched paths are not labelled by the path a caller sent: that would let anyone grow the series.
    if (o.access === 'admin') this.adminRequests.inc({ route: `${o.method} ${o.route ?? 'unmatched'}`, role: o.role ?? 'none', status: String(o.status) });
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}

/** For code run without a CA around it (benchmarks, unit tests). */
export const NO_METRICS: CaMetricsPorts = {
  issuance: () => () => undefined,
  pollStarted: () => () => undefined,
  delivered: () => undefined,
  rotationPass: () => undefined,
  response: () => undefined,
};
