import Fastify, { type FastifyBaseLogger } from 'fastify';
import swagger from '@fastify/swagger';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Logger } from '../../lib/log.js';
import { CairnError } from '../../lib/errors.js';
import type { AdminAccess } from '../admin-auth/access.js';
import { registerAdminRoutes } from '../admin-auth/routes.js';
import { registerKekRoutes } from '../kek/routes.js';
import type { CaMetrics } from '../metrics/ca-metrics.js';
import { registerMetricsRoute } from '../metrics/routes.js';
import type { KekService } from '../kek/service.js';
import type { AdminAuthService } from '../admin-auth/service.js';
import type { AuthorityService } from '../authority/service.js';
import type { AuthorityLifecycle } from '../authority/lifecycle.js';
import { registerAuthorityRoutes } from '../authority/routes.js';
import type { OfflineUpstream } from '../upstream/offline.js';
import type { BanService } from '../bans/service.js';
import { registerHealthRoutes, registerPublicRoutes } from '../bundle/routes.js';
import type { InventoryStore } from '../inventory/store.js';
import { registerMintRoutes } from '../issuance/routes.js';
import type { IssuanceService } from '../issuance/service.js';
import { registerInventoryRoutes } from '../inventory/routes.js';
import { registerTrustDomainRoutes } from '../trust-domains/routes.js';
import type { TrustDomainService } from '../trust-domains/service.js';
import { errorHandler, toHttpError } from './errors.js';
import { plainAdminGate, type PlainAdminMode } from './plain-admin.js';
import { RequestLogController } from './request-log.js';
import { registerCrlRoutes, registerRevocationRoutes } from '../revocation/routes.js';
import type { RevocationService } from '../revocation/service.js';
import { agentRoutes, deviceRoutes, registerBootstrapRoutes, registerNodeContext } from '../enrollment/routes.js';
import type { EnrollmentService } from '../enrollment/service.js';
import { registerEntryRoutes } from '../entries/routes.js';
import { templateAgentRoutes } from '../templates/agent-routes.js';
import type { TemplateIssuance } from '../templates/issuance.js';
import { registerTemplateRoutes } from '../templates/routes.js';
import type { TemplateService } from '../templates/service.js';
import { registerFederationRoutes } from '../federation/routes.js';
import type { FederationService } from '../federation/service.js';
import type { RelationshipService } from '../federation/relationships.js';
import type { EntryService } from '../entries/service.js';
import { registerNodeRoutes } from '../nodes/routes.js';
import { registerAttestorAdminRoutes, registerNodeAttestationRoutes } from '../node-attestation/routes.js';
import type { NodeAttestationService } from '../node-attestation/service.js';
import type { SyncService } from '../sync/service.js';
import { registerTokenRoutes } from '../tokens/routes.js';
import { registerAuditRoutes } from '../audit/routes.js';
import type { AuditLog } from '../audit/service.js';
import type { Checkpointer } from '../audit/checkpointer.js';
import type { TokenService } from '../tokens/service.js';
import type { App } from './types.js';
import { checkListenerLimits, DEFAULT_LISTENER_LIMITS, fastifyTimeouts, nodeServerOptions, tlsServerOptions, type ListenerLimits } from './listener.js';

export interface CaServices {
  readonly adminAuth: AdminAuthService;
  readonly kek: KekService;
  readonly metrics: CaMetrics;
  /** Authentication, the route → role table and the record of every admin request (ca/admin-auth/). */
  readonly adminAccess: AdminAccess;
  readonly tokens: TokenService;
  readonly entries: EntryService;
  /** Workload identity templates (ca/templates/): admin routes and issuance by template for agents. */
  readonly templates: TemplateService;
  readonly templateIssuance: TemplateIssuance;
  /** Foreign trust domains' bundles per local trust domain (ca/federation/). */
  readonly federation: FederationService;
  readonly relationships: RelationshipService;
  readonly enrollment: EnrollmentService;
  readonly bans: BanService;
  readonly nodeAttestation: NodeAttestationService;
  readonly sync: SyncService;
  readonly authority: AuthorityService;
  readonly authorityLifecycle: AuthorityLifecycle;
  readonly offlineUpstream: OfflineUpstream;
  readonly trustDomains: TrustDomainService;
  readonly issuance: IssuanceService;
  readonly inventory: InventoryStore;
  /** Revoked SVIDs and the trust domains' CRLs (ca/revocation/). */
  readonly revocation: RevocationService;
  /** The verifiable audit log (ca/audit/) and its integrate/sign loop. */
  readonly audit: AuditLog;
  readonly auditCheckpointer: Checkpointer;
  /** Whether this CA can serve now (store answering, schema one it can serve), and if not, why. */
  readonly ready: () => Promise<{ readonly ready: boolean; readonly reason?: string }>;
}

export interface CaAppOptions {
  readonly logger: Logger;
  /** This installation's version, reported by /healthz. */
  readonly version?: string;
  /** Request body cap; a CSR is ~1 KiB, so the default leaves room for batches without inviting floods. */
  readonly bodyLimit?: number;
  /**
   * Serve over TLS with these credentials, and add the enrollment (token redemption) and the
   * mTLS agent and device contexts, which exist only on the TLS listener.
   */
  readonly tls?: { readonly key: string; readonly cert: string } | undefined;
  /** Without `tls`: who may call admin routes on this plain listener (default loopback only). */
  readonly plainAdmin?: PlainAdminMode;
  /** The TLS listener's URL, named in the refusal a plain-listener admin caller gets. */
  readonly tlsUrl?: () => string;
  /** Request, keep-alive and handshake timeouts and the connection cap (ca/http/listener.ts). */
  readonly limits?: ListenerLimits | undefined;
}

export interface RouteInfo {
  readonly method: string;
  readonly url: string;
  readonly access: string;
}

export interface CaApp {
  readonly app: App;
  /** Every route registered, with the access context it was registered in. */
  readonly routes: RouteInfo[];
}

export const DEFAULT_BODY_LIMIT = 1024 * 1024;

/**
 * The CA's HTTP surface in encapsulated contexts: public (bundle, JWKS, OIDC, health; no auth),
 * admin (a bearer credential or an admin SVID on every route, held to the route table by hooks on
 * the context so no route can skip them), and on the TLS listener bootstrap and the mTLS agent and
 * device contexts. main.ts decides where it listens.
 */
export async function buildCaApp(services: CaServices, options: CaAppOptions): Promise<CaApp> {
  const limits = checkListenerLimits(options.limits ?? DEFAULT_LISTENER_LIMITS);
  const app = Fastify({
    ...(options.tls
      ? { https: { ...tlsServerOptions(limits, options.tls), requestCert: true, rejectUnauthorized: false } }
      : { http: nodeServerOptions(limits) }),
    ...fastifyTimeouts(limits),
    loggerInstance: options.logger as FastifyBaseLogger,
    logController: new RequestLogController(),
    bodyLimit: options.bodyLimit ?? DEFAULT_BODY_LIMIT,
    ajv: { customOptions: { removeAdditional: false, coerceTypes: 'array', useDefaults: true } },
    return503OnClosing: true,
    forceCloseConnections: 'idle',
    // Long path parameters reach the schemas (and get a coded 400) instead of the router's bare 414.
    routerOptions: { maxParamLength: 4096 },
    // Errors raised before routing (a malformed URL) answer in our format too.
    frameworkErrors: (err, _req, reply) => {
      const { status, body } = toHttpError(err);
      void (reply as unknown as { status(n: number): { send(b: unknown): void } }).status(status).send(body);
    },
  }).withTypeProvider<TypeBoxTypeProvider>();
  if (limits.maxConnections > 0) app.server.maxConnections = limits.maxConnections;
  // Only JSON bodies: fastify's default text/plain parser would turn a wrong content type into a
  // confusing schema error instead of 415.
  app.removeContentTypeParser('text/plain');

  // Child contexts stamp `config.access` in their own onRoute hooks, which run after this one,
  // so the route options are kept and read once everything is registered.
  const registered: { method: string | string[]; url: string; config?: { access?: string } }[] = [];
  app.addHook('onRoute', (route) => {
    registered.push(route);
  });

  await app.register(swagger, {
    openapi: {
      info: { title: 'Cairn CA', version: options.version ?? 'unknown', description: 'SPIFFE identity authority: admin, public and agent APIs' },
      components: { securitySchemes: { adminToken: { type: 'http', scheme: 'bearer', description: 'a named admin credential; on the TLS listener an admin SVID (client certificate of an entry marked admin) works instead' } } },
    },
  });

  app.setErrorHandler(errorHandler);
  app.addHook('onResponse', async (req, reply) => {
    services.metrics.response({
      method: req.method,
      route: req.routeOptions.url,
      access: req.routeOptions.config?.access,
      status: reply.statusCode,
      code: req.errorCode ?? req.adminState?.errorCode,
      role: req.adminState?.principal?.role,
    });
  });
  app.setNotFoundHandler((req, reply) => {
    const { status, body } = toHttpError(new CairnError('not_found', `no route for ${req.method} ${req.url.split('?')[0]}`));
    void reply.status(status).send(body);
  });

  await app.register(async (pub) => {
    pub.addHook('onRoute', (route) => {
      route.config = { ...route.config, access: 'public' };
    });
    pub.addHook('onRequest', async (req) => {
      req.actor = 'public';
    });
    registerHealthRoutes(pub, services.ready, options.version ?? 'unknown');
    if (!options.tls) registerMetricsRoute(pub, services.metrics);
    registerPublicRoutes(pub, { authority: services.authority });
    registerCrlRoutes(pub, services.revocation);
    pub.get('/docs', { schema: { hide: true } }, async () => app.swagger());
    pub.get('/docs/openapi.json', { schema: { hide: true } }, async () => app.swagger());
  });

  await app.register(async (admin) => {
    admin.addHook('onRoute', (route) => {
      route.config = { ...route.config, access: 'admin' };
      route.schema = { ...route.schema, security: [{ adminToken: [] }] };
    });
    // On the plain listener the gate comes first: a refused caller's token is never even checked.
    if (!options.tls) admin.addHook('onRequest', plainAdminGate(options.plainAdmin ?? 'loopback', options.tlsUrl ?? (() => '')));
    services.adminAccess.install(admin);
    registerTrustDomainRoutes(admin, services.trustDomains);
    registerMintRoutes(admin, services.issuance);
    registerInventoryRoutes(admin, services.inventory);
    registerRevocationRoutes(admin, services.revocation);
    registerTokenRoutes(admin, services.tokens);
    registerEntryRoutes(admin, services.entries);
    registerTemplateRoutes(admin, services.templates);
    registerNodeRoutes(admin, services.enrollment, services.bans);
    registerAttestorAdminRoutes(admin, services.nodeAttestation);
    registerAdminRoutes(admin, services.adminAuth);
    registerKekRoutes(admin, services.kek);
    registerAuditRoutes(admin, services.audit, services.auditCheckpointer);
    registerAuthorityRoutes(admin, services.authorityLifecycle, services.offlineUpstream);
    registerFederationRoutes(admin, services.federation, services.relationships);
  });

  if (options.tls) {
    await app.register(async (boot) => {
      boot.addHook('onRoute', (route) => {
        route.config = { ...route.config, access: 'bootstrap' };
      });
      boot.addHook('onRequest', async (req) => {
        req.actor = `bootstrap:${req.ip}`;
      });
      registerBootstrapRoutes(boot, services.enrollment);
      registerNodeAttestationRoutes(boot, services.nodeAttestation);
    });
    const entryAgentRoutes = agentRoutes(services.enrollment, services.sync);
    const byTemplate = templateAgentRoutes(services.templateIssuance, (td) => services.authority.x509Bundle(td));
    await registerNodeContext(app, 'agent', services.enrollment, (ctx) => {
      entryAgentRoutes(ctx);
      byTemplate(ctx);
    });
    await registerNodeContext(app, 'device', services.enrollment, deviceRoutes(services.enrollment));
  }

  await app.ready();
  const routes = registered.flatMap((r) =>
    (Array.isArray(r.method) ? r.method : [r.method])
      .filter((m) => m !== 'HEAD')
      .map((method) => ({ method, url: r.url, access: r.config?.access ?? 'unset' })),
  );
  return { app, routes };
}
