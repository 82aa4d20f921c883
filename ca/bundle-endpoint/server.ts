import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Clock } from '../../lib/clock.js';
import { isCairnError } from '../../lib/errors.js';
import type { Logger } from '../../lib/log.js';
import { generateKeyAndCsr } from '../../lib/pkcs10.js';
import { derToPem } from '../../spiffe/bundle/bundle.js';
import { SpiffeId } from '../../spiffe/id.js';
import type { Unlisten } from '../db/database.js';
import { verifyCsr } from '../issuance/csr.js';
import type { IssuedX509Svid, IssuanceService } from '../issuance/service.js';
import type { AuthorityService } from '../authority/service.js';
import { spiffeBundleDocument } from '../bundle/documents.js';
import type { BundleEndpoint, TrustDomain } from '../trust-domains/model.js';
import { parseListen } from './config.js';

export interface BundleEndpointDeps {
  readonly clock: Clock;
  readonly logger: Logger;
  /** The trust domains that have an endpoint configured (TrustDomainStore.withBundleEndpoints). */
  readonly configured: () => Promise<TrustDomain[]>;
  readonly authority: Pick<AuthorityService, 'published'>;
  readonly issuance: Pick<IssuanceService, 'issueX509'>;
  /** Calls back when something may have changed (the change feed's NOTIFY). */
  readonly onChange: (listener: () => void) => Promise<Unlisten>;
  /** How often configuration and the SVIDs are looked at besides notifications. */
  readonly checkEveryMs?: number;
}

/** The endpoint's SVID and its private key (PEM), which never leaves this process. */
type ServingSvid = IssuedX509Svid & { readonly key: string };

interface Running {
  readonly endpoint: BundleEndpoint;
  server: Server;
  svid: ServingSvid;
  /** The trust domain's bundle sequence when the SVID was issued: a new authority means a new SVID. */
  sequence: number;
  /** The last document served, answered while the database is away. */
  lastDocument?: string;
}

/**
 * The SPIFFE Federation bundle endpoints of this replica (https_spiffe profile): one HTTPS listener
 * per trust domain that has one configured, authenticating with an X.509-SVID of that trust
 * domain which the CA issues to itself and renews at half-life or when the bundle changes. Every
 * replica runs the same set; configuration changes start, move and stop listeners without a
 * restart (on the change notification, and every few seconds in case one was missed). Peers are
 * never asked for a client certificate (the standard forbids requiring client authentication).
 */
export class BundleEndpoints {
  private readonly running = new Map<string, Running>();
  /** Listen failures already logged, by trust domain: logged once per distinct failure, not every pass. */
  private readonly failed = new Map<string, string>();
  private pass: Promise<void> = Promise.resolve();
  private timer: NodeJS.Timeout | undefined;
  private unlisten: Unlisten | undefined;
  private stopped = false;
  private queued = false;

  constructor(private readonly deps: BundleEndpointDeps) {}

  async start(): Promise<void> {
    this.unlisten = await this.deps.onChange(() => this.reconcile());
    await this.reconcile();
    this.timer = setInterval(() => void this.reconcile(), this.deps.checkEveryMs ?? 15_000);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    await this.unlisten?.();
    await this.pass;
    await Promise.all([...this.running.keys()].map((td) => this.close(td)));
  }

  /**
   * One pass at a time: brings the listeners in line with the configuration, renews SVIDs due. A
   * burst of notifications (every entry change sends one) makes one more pass, not one each.
   */
  reconcile(): Promise<void> {
    if (this.queued) return this.pass;
    this.queued = true;
    this.pass = this.pass.then(() => {
      this.queued = false;
      return this.reconcileNow();
    }).catch((err: unknown) => {
      const unavailable = isCairnError(err, 'store_unavailable');
      this.deps.logger[unavailable ? 'warn' : 'error']({ err: unavailable ? undefined : err }, 'bundle endpoints: could not read their configuration; will retry');
    });
    return this.pass;
  }

  private async reconcileNow(): Promise<void> {
    if (this.stopped) return;
    const wanted = new Map((await this.deps.configured()).map((td) => [td.name, td]));
    for (const [name, r] of this.running) {
      const td = wanted.get(name);
      if (!td || td.bundleEndpoint!.listen !== r.endpoint.listen || td.bundleEndpoint!.spiffeId !== r.endpoint.spiffeId) await this.close(name);
    }
    for (const td of wanted.values()) {
      if (this.stopped) return;
      const r = this.running.get(td.name);
      try {
        if (!r) await this.open(td);
        else if (this.due(r, td)) await this.renew(r, td);
      } catch (err) {
        const message = (err as Error).message;
        if (this.failed.get(td.name) !== message) {
          this.failed.set(td.name, message);
          this.deps.logger.error({ trustDomain: td.name, listen: td.bundleEndpoint!.listen, err: { message } }, `the bundle endpoint of ${td.name} is not served on this replica: ${message}`);
        }
      }
    }
    for (const name of this.failed.keys()) if (!wanted.has(name) || this.running.has(name)) this.failed.delete(name);
  }

  private due(r: Running, td: TrustDomain): boolean {
    const { notBefore, notAfter } = r.svid;
    const half = notBefore.getTime() + (notAfter.getTime() - notBefore.getTime()) / 2;
    return this.deps.clock.now().getTime() >= half || td.bundleSequence !== r.sequence;
  }

  private async issue(td: TrustDomain): Promise<ServingSvid> {
    const key = generateKeyAndCsr('ec-p256');
    const [svid] = await this.deps.issuance.issueX509(td.name, [{ csr: verifyCsr(key.csr), policy: { spiffeId: SpiffeId.parse(td.bundleEndpoint!.spiffeId), dnsNames: [] } }], 'cairn:bundle-endpoint');
    return { ...svid!, key: key.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString() };
  }

  private async open(td: TrustDomain): Promise<void> {
    const endpoint = td.bundleEndpoint!;
    // The port is taken before an SVID is issued: a listener that cannot start (a port in use) is
    // retried every pass, and must not leave an SVID in the inventory and the audit log each time.
    // Until its SVID is set, a handshake finds no certificate and fails.
    let running: Running | undefined;
    const server = createServer({ minVersion: 'TLSv1.2', requestCert: false }, (req, res) => {
      if (running) void this.serve(td.name, running, req, res);
      else end(res, 503, { code: 'store_unavailable', message: 'starting' });
    });
    // timeouts on every listener: a peer that opens connections and sends nothing holds nothing for long
    server.requestTimeout = 10_000;
    server.headersTimeout = 5_000;
    server.keepAliveTimeout = 5_000;
    server.maxConnections = 1_000;
    server.on('tlsClientError', () => undefined);
    const { host, port } = parseListen(endpoint.listen);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (err) => this.deps.logger.warn({ err, trustDomain: td.name }, 'bundle endpoint listener error'));
    let svid: ServingSvid;
    try {
      svid = await this.issue(td);
    } catch (err) {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      throw err;
    }
    server.setSecureContext({ key: svid.key, cert: svid.chain.map((d) => derToPem(d)).join(''), minVersion: 'TLSv1.2' });
    running = { endpoint, svid, sequence: td.bundleSequence, server };
    this.running.set(td.name, running);
    this.deps.logger.info({ event: 'bundle_endpoint.started', trustDomain: td.name, listen: endpoint.listen, url: endpoint.url, spiffeId: endpoint.spiffeId, serial: svid.serial }, `bundle endpoint of ${td.name} listening on ${endpoint.listen}`);
  }

  private async renew(r: Running, td: TrustDomain): Promise<void> {
    const svid = await this.issue(td);
    r.server.setSecureContext({ key: svid.key, cert: svid.chain.map((d) => derToPem(d)).join(''), minVersion: 'TLSv1.2' });
    r.svid = svid;
    r.sequence = td.bundleSequence;
    this.deps.logger.info({ event: 'bundle_endpoint.renewed', trustDomain: td.name, serial: svid.serial, notAfter: svid.notAfter.toISOString() }, 'bundle endpoint SVID renewed');
  }

  private async close(name: string): Promise<void> {
    const r = this.running.get(name);
    if (!r) return;
    this.running.delete(name);
    await new Promise<void>((resolve) => {
      r.server.close(() => resolve());
      r.server.closeAllConnections();
    });
    this.deps.logger.info({ event: 'bundle_endpoint.stopped', trustDomain: name, listen: r.endpoint.listen }, `bundle endpoint of ${name} stopped on ${r.endpoint.listen}`);
  }

  /** `GET /` only (as SPIRE's server): the SPIFFE bundle document with sequence and refresh hint. */
  private async serve(name: string, r: Running, req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    if (path !== '/') return end(res, 404, { code: 'not_found', message: 'the bundle is served at /' });
    if (req.method !== 'GET' && req.method !== 'HEAD') return end(res, 405, { code: 'invalid_request', message: 'the bundle endpoint answers GET only' }, { allow: 'GET, HEAD' });
    let body: string;
    try {
      const { trustDomain, keys } = await this.deps.authority.published(name);
      body = JSON.stringify(spiffeBundleDocument(trustDomain, keys));
      r.lastDocument = body;
    } catch (err) {
      // nothing can rotate a key while the database is away: the last document is still true
      if (!(isCairnError(err, 'store_unavailable') && r.lastDocument)) {
        this.deps.logger.warn({ err: { message: (err as Error).message }, trustDomain: name }, 'bundle endpoint could not read the bundle');
        return end(res, 503, { code: 'store_unavailable', message: 'the bundle cannot be read right now; retry later' });
      }
      body = r.lastDocument;
    }
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-cache', 'content-length': Buffer.byteLength(body) });
    res.end(req.method === 'HEAD' ? undefined : body);
  }
}

function end(res: ServerResponse, status: number, body: { code: string; message: string }, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}
