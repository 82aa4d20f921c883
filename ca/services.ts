import { UpstreamService } from './upstream/service.js';
import { OfflineUpstream } from './upstream/offline.js';
import { UpstreamStore } from './upstream/store.js';
import { hostname } from 'node:os';
import type { Clock } from '../lib/clock.js';
import type { Logger } from '../lib/log.js';
import type { Random } from '../lib/random.js';
import type { Database } from './db/database.js';
import { describeSchema, schemaServes, schemaStatus, schemaVersion, type Migration } from './db/migrate.js';
import { AdminAccess } from './admin-auth/access.js';
import { logRecordSink } from './admin-auth/record.js';
import { AdminAuthService } from './admin-auth/service.js';
import { AdminTokenStore } from './admin-auth/store.js';
import { SvidAdminAuth } from './admin-auth/svid.js';
import { createSealer, KekRing } from './authority/sealing.js';
import { KekService } from './kek/service.js';
import { CaMetrics } from './metrics/ca-metrics.js';
import { SealedValueStore } from './kek/store.js';
import { AuthorityService } from './authority/service.js';
import { AuthorityLifecycle } from './authority/lifecycle.js';
import { AuthorityKeyStore } from './authority/store.js';
import { BanService } from './bans/service.js';
import { BanStore } from './bans/store.js';
import { EntryStore } from './entries/store.js';
import { EntryService } from './entries/service.js';
import { TemplateStore } from './templates/store.js';
import { TemplateService } from './templates/service.js';
import { TemplateIssuance } from './templates/issuance.js';
import { FederationService } from './federation/service.js';
import { FederationStore } from './federation/store.js';
import { RelationshipStore } from './federation/store.js';
import { RelationshipService } from './federation/relationships.js';
import { Refresher } from './federation/refresher.js';
import { EndpointAllowList } from './federation/endpoint-allow.js';
import { EnrollmentService, serverId } from './enrollment/service.js';
import { NodeAttestationService } from './node-attestation/service.js';
import { NodeAttestationStore } from './node-attestation/store.js';
import type { KubeCredentialSet } from './node-attestation/kube-credentials.js';
import { IssuancePool } from './issuance/batch-pool.js';
import { FailureLimiter } from './enrollment/failure-limiter.js';
import { NodeStore } from './nodes/store.js';
import { RevocationService } from './revocation/service.js';
import { RevocationStore } from './revocation/store.js';
import { ServerTlsService } from './server-tls/service.js';
import { ServerTlsStore } from './server-tls/store.js';
import { ChangeFeed } from './sync/change-feed.js';
import { SyncService } from './sync/service.js';
import { TokenService } from './tokens/service.js';
import { TokenStore } from './tokens/store.js';
import type { CaServices } from './http/app.js';
import { InventoryStore } from './inventory/store.js';
import { IssuanceService } from './issuance/service.js';
import { TrustDomainService } from './trust-domains/service.js';
import { WebCertDir } from './bundle-endpoint/web-files.js';
import { TrustDomainStore } from './trust-domains/store.js';
import { AuditStore } from './audit/store.js';
import { AuditLog } from './audit/service.js';
import { auditRecordSink } from './audit/admin-sink.js';
import { RequestTransactions } from './db/request-transactions.js';
import { Checkpointer, type CheckpointExport } from './audit/checkpointer.js';

export interface CoreDeps {
  readonly db: Database;
  readonly clock: Clock;
  readonly random: Random;
  readonly logger: Logger;
  readonly kek: Buffer;
  /** The file the KEK came from: `cairn kek rotate` stages the new one beside it, SIGHUP re-reads it. */
  readonly kekFile?: string | undefined;
  /** The TLS endpoint bootstrappers use and the pin of its trust anchor (known once listening). */
  readonly tlsEndpoint: () => Promise<{ url: string; pin: string }>;
  /** The CA's own Kubernetes credential sets by name (node-attestation/kube-credentials.ts credentialSets). */
  readonly kubeCredentials?: ReadonlyMap<string, KubeCredentialSet>;
  /** The migrations this code knows: readiness needs the schema to be one it can serve. Absent: any migrated schema. */
  readonly migrations?: readonly Migration[];
  /** For readiness messages. */
  readonly version?: string;
  /** Also the client library's process_* and nodejs_* metrics: true for the CA process, not for CAs in tests. */
  readonly processMetrics?: boolean;
  /** URI name constraints in new CA certificates (default true; see ca/authority/ca-certificate.ts). */
  readonly caNameConstraints?: boolean | undefined;
  /** Bundle endpoints the CA may fetch for federation relationships (ca/federation/endpoint-allow.ts); none by default. */
  readonly federationEndpoints?: readonly string[] | undefined;
  /** Where the operator's certificates for https_web bundle endpoints are (ca/bundle-endpoint/web-files.ts); none by default. */
  readonly webCertDir?: WebCertDir | undefined;
  /** The audit log: its origin when this replica creates it, how often it signs while growing, where checkpoints go. */
  readonly audit?: { readonly origin?: string | undefined; readonly checkpointEveryMs?: number | undefined; readonly export?: CheckpointExport | undefined } | undefined;
}

export interface CaCore extends CaServices {
  readonly stores: {
    readonly trustDomains: TrustDomainStore;
    readonly keys: AuthorityKeyStore;
    readonly entries: EntryStore;
    readonly adminTokens: AdminTokenStore;
    readonly nodes: NodeStore;
    readonly tokens: TokenStore;
  };
  readonly serverTls: ServerTlsService;
  readonly issuancePool: IssuancePool;
  readonly feed: ChangeFeed;
  /** Polls the bundle endpoints of federation relationships (a run(signal) task of ca/main.ts). */
  readonly federationRefresher: Refresher;
  /** The operator's directory of https_web certificates (none configured: https_web is refused). */
  readonly webCerts: WebCertDir;
}

/** The audit log's origin when none is configured: this host's name (replicas keep whichever the first one stored). */
export const defaultAuditOrigin = (host: string): string => `${host.replace(/[^A-Za-z0-9.-]/g, '-') || 'localhost'}/cairn/audit`;

/** Wires stores and services over one database. No I/O happens here. */
export function buildCaCore(deps: CoreDeps): CaCore {
  const { clock, random, logger } = deps;
  // every store works through this: inside an admin write it is that request's transaction, which
  // commits with the request's audit record (AdminAccess), outside one the database itself
  const transactions = new RequestTransactions(deps.db);
  const db = transactions.db;
  const trustDomainStore = new TrustDomainStore(db);
  const keys = new AuthorityKeyStore(db);
  const entries = new EntryStore(db);
  const templates = new TemplateStore(db);
  const adminTokens = new AdminTokenStore(db);
  const inventory = new InventoryStore(db);
  const kekRing = new KekRing(deps.kek);
  const sealer = createSealer(kekRing, random);
  const audit = new AuditLog({ store: new AuditStore(db), clock, sealer, logger, origin: deps.audit?.origin ?? defaultAuditOrigin('localhost') });
  const auditCheckpointer = new Checkpointer(audit, clock, logger, { integrateEveryMs: 1000, checkpointEveryMs: deps.audit?.checkpointEveryMs ?? 10_000, export: deps.audit?.export ?? {} });
  const upstream = new UpstreamService({ clock, sealer, store: new UpstreamStore(db) });
  const authority = new AuthorityService({ db, clock, random, sealer, keys, trustDomains: trustDomainStore, logger, caNameConstraints: deps.caNameConstraints ?? true, audit, upstream });
  const offlineUpstream = new OfflineUpstream({ db, clock, logger, sealer, keys, trustDomains: trustDomainStore, authority, upstream, audit, caNameConstraints: deps.caNameConstraints ?? true });
  const nodes = new NodeStore(db);
  const tokenStore = new TokenStore(db);
  const issuancePool = new IssuancePool();
  const metrics = new CaMetrics(
    { activeAuthorities: () => keys.activeEverywhere(), auditLog: () => audit.state(), offlineSuccessors: () => offlineUpstream.dueEverywhere() },
    { process: deps.processMetrics ?? false },
  );
  const issuance = new IssuanceService({ clock, random, logger, authority, inventory, pool: issuancePool, metrics, audit, db });
  const relationshipStore = new RelationshipStore(db);
  const federation = new FederationService({ clock, logger, store: new FederationStore(db), relationships: relationshipStore, trustDomains: trustDomainStore, entries, nodes, authority, audit });
  const tokens = new TokenService({ store: tokenStore, trustDomains: trustDomainStore, clock, random, logger, endpoint: deps.tlsEndpoint, audit, federation });
  const limiter = new FailureLimiter(clock);
  const bans = new BanService({ clock, logger, store: new BanStore(db), trustDomains: trustDomainStore, audit });
  const revocation = new RevocationService({ clock, logger, store: new RevocationStore(db), keys, trustDomains: trustDomainStore, sealer, audit });
  const feed = new ChangeFeed(db, clock, serverId);
  const enrollment = new EnrollmentService({ clock, logger, tokens, nodes, entries, issuance, authority, limiter, bans, revocations: revocation, audit, federation, shared: (key, load) => feed.current(key, load) });
  const webCerts = deps.webCertDir ?? new WebCertDir(undefined);
  const trustDomains = new TrustDomainService({ db, clock, logger, store: trustDomainStore, keys, authority, entries, templates, hostName: hostname(), upstream, webCerts });
  const relationships = new RelationshipService({
    clock, logger, store: relationshipStore, federation, trustDomains: trustDomainStore, authority, audit, jitter: () => random.bytes(4).readUInt32BE() / 2 ** 32,
    allowed: new EndpointAllowList(deps.federationEndpoints ?? []),
  });
  const adminAuth = new AdminAuthService({ clock, random, logger, store: adminTokens });
  const svidAdmins = new SvidAdminAuth({
    clock,
    facts: {
      x509Authorities: (td) => authority.x509Authorities(td),
      issued: (serial) => inventory.get(serial),
      entry: (id) => entries.get(id),
      template: (id) => templates.get(id),
      node: (spiffeId) => nodes.get(spiffeId),
      revoked: (serial) => revocation.isRevoked(serial),
    },
  });
  const adminAccess = new AdminAccess({
    clock,
    tokens: adminAuth,
    svids: svidAdmins,
    facts: {
      entry: (id) => entries.get(id),
      template: (id) => templates.get(id),
      // an agent serving an admin template hands out admin credentials too
      adminParents: async (td) => [...new Set([...(await entries.adminParents(td)), ...(await templates.adminParents(td))])],
      aliasesFor: (td, selectors) => entries.aliasesFor(td, serverId(td), selectors),
      nodesBannedBy: (td, subject) => nodes.withBanSubject(td, subject),
    },
    // failed admin authentications reach the audit log at most 20 per source and minute
    sink: auditRecordSink(audit, db, logRecordSink(logger), new FailureLimiter(clock, 20, 60)),
    transactions,
  });
  return {
    stores: { trustDomains: trustDomainStore, keys, entries, adminTokens, nodes, tokens: tokenStore },
    issuancePool,
    serverTls: new ServerTlsService({ store: new ServerTlsStore(db), sealer, clock, random, logger }),
    feed,
    tokens,
    entries: new EntryService({ clock, random, logger, store: entries, trustDomains: trustDomainStore, federation }),
    federation,
    templates: new TemplateService({ clock, random, logger, store: templates, trustDomains: trustDomainStore, audit, federation }),
    templateIssuance: new TemplateIssuance({ store: templates, issuance, parentsOf: (node) => enrollment.parentsOf(node) }),
    relationships,
    federationRefresher: new Refresher({ clock, logger, store: relationshipStore, relationships }),
    webCerts,
    enrollment,
    bans,
    sync: new SyncService({ clock, entries, templates, authority, feed, metrics, revocation, federation, jitter: () => random.bytes(4).readUInt32BE() / 2 ** 32 }),
    metrics,
    revocation,
    adminAuth,
    adminAccess,
    kek: new KekService({ ring: kekRing, sealer, store: new SealedValueStore(db), clock, random, logger, kekFile: deps.kekFile, audit }),
    audit,
    auditCheckpointer,
    authority,
    authorityLifecycle: new AuthorityLifecycle({ db, clock, logger, keys, trustDomains: trustDomainStore, authority, inventory, audit }),
    offlineUpstream,
    trustDomains,
    // Its own budget: PSAT and x509pop evidence cannot be guessed, so this only keeps a misbehaving
    // source from making us hammer the Kubernetes API; nodes behind one NAT share it.
    nodeAttestation: new NodeAttestationService({
      clock, random, logger, store: new NodeAttestationStore(db), enrollment, trustDomains, bans, limiter: new FailureLimiter(clock, 60), endpoint: deps.tlsEndpoint,
      sealer, kubeCredentials: deps.kubeCredentials ?? new Map(), audit,
    }),
    issuance,
    inventory,
    ready: async () => {
      if (!deps.migrations) return (await schemaVersion(db)) > 0 ? { ready: true } : { ready: false, reason: 'the database is not migrated' };
      const status = await schemaStatus(db, deps.migrations);
      return schemaServes(status) ? { ready: true } : { ready: false, reason: describeSchema(status, deps.version ?? 'this version') };
    },
  };
}
