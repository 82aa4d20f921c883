import { createServer, type Server } from 'node:https';
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
import type { BundleEndpoint, SpiffeBundleEndpoint, TrustDomain, WebBundleEndpoint } from '../trust-domains/model.js';
import { parseListen } from './config.js';
import { end, serveEndpoint, type EndpointState } from './handler.js';
import type { WebCertDir } from './web-files.js';

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
  /** The operator's certificates for https_web endpoints. */
  readonly webCerts: Pick<WebCertDir, 'loadPair'>;
  /** How often the files of https_web endpoints are read again (default 5 s). */
  readonly webCheckEveryMs?: number;
}

/** The endpoint's SVID and its private key (PEM), which never leaves this process. */
type ServingSvid = IssuedX509Svid & { readonly key: string };

interface Running extends EndpointState {
  server: Server;
  /** https_spiffe: the SVID served and the trust domain's bundle sequence when it was issued (a new authority means a new SVID). */
  svid?: ServingSvid;
  sequence: number;
  /** https_web: the files' digest as served, and a failed reading seen on the last check (logged when seen twice). */
  webDigest?: string;
  webFailure?: { message: string; logged: boolean };
}

const TLS = { minVersion: 'TLSv1.2' } as const;
const svidContext = (svid: ServingSvid) => ({ ...TLS, key: svid.key, cert: svid.chain.map((d) => derToPem(d)).join('') });

/** Whether a running listener can keep serving an endpoint as now configured (its URL matters only to peers). */
function sameListener(a: BundleEndpoint, b: BundleEndpoint): boolean {
  if (a.listen !== b.listen) return false;
  if (a.profile === 'https_spiffe') return b.profile === 'https_spiffe' && a.spiffeId === b.spiffeId;
  return b.profile === 'https_web' && a.certFile === b.certFile && a.keyFile === b.keyFile;
}

/**
 * The SPIFFE Federation bundle endpoints of this replica: one HTTPS listener per trust domain that
 * has one configured, authenticating (https_spiffe) with an X.509-SVID of that trust domain which
 * the CA issues to itself and renews at half-life or when the bundle changes, or (https_web) with
 * the certificate and key the operator supplies, read again every few seconds and served anew when
 * they change (a bad or half-replaced pair keeps the last good one serving). Every
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
  private webTimer: NodeJS.Timeout | undefined;
  private unlisten: Unlisten | undefined;
  private stopped = false;
  private queued = false;

  constructor(private readonly deps: BundleEndpointDeps) {}

  async start(): Promise<void> {
    this.unlisten = await this.deps.onChange(() => this.reconcile());
    await this.reconcile();
    this.timer = setInterval(() => void this.reconcile(), this.deps.checkEveryMs ?? 15_000);
    this.timer.unref();
    this.webTimer = setInterval(() => this.checkWebFiles(), this.deps.webCheckEveryMs ?? 5_000);
    this.webTimer.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    if (this.webTimer) clearInterval(this.webTimer);
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
      if (!td || !sameListener(r.endpoint, td.bundleEndpoint!)) await this.close(name);
    }
    for (const td of wanted.values()) {
      if (this.stopped) return;
      const r = this.running.get(td.name);
      try {
        if (!r) await this.open(td);
        else if (r.svid && this.due(r, r.svid, td)) await this.renew(r, td);
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

  private due(r: Running, svid: ServingSvid, td: TrustDomain): boolean {
    const { notBefore, notAfter } = svid;
    const half = notBefore.getTime() + (notAfter.getTime() - notBefore.getTime()) / 2;
    return this.deps.clock.now().getTime() >= half || td.bundleSequence !== r.sequence;
  }

  private async issue(td: TrustDomain, endpoint: SpiffeBundleEndpoint): Promise<ServingSvid> {
    const key = generateKeyAndCsr('ec-p256');
    const [svid] = await this.deps.issuance.issueX509(td.name, [{ csr: verifyCsr(key.csr), policy: { spiffeId: SpiffeId.parse(endpoint.spiffeId), dnsNames: [] } }], 'cairn:bundle-endpoint');
    return { ...svid!, key: key.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString() };
  }

  private async open(td: TrustDomain): Promise<void> {
    const endpoint = td.bundleEndpoint!;
    // https_web: the operator's files are read before the port is taken; a pair that cannot be
    // served yet is retried every pass and logged once
    const web = endpoint.profile === 'https_web' ? this.deps.webCerts.loadPair(endpoint.certFile, endpoint.keyFile) : undefined;
    // https_spiffe: the port is taken before an SVID is issued: a listener that cannot start (a port
    // in use) is retried every pass, and must not leave an SVID in the inventory and the audit log
    // each time. Until its SVID is set, a handshake finds no certificate and fails.
    let running: Running | undefined;
    const server = createServer({ ...TLS, requestCert: false, ...(web ? { key: web.key, cert: web.cert } : {}) }, (req, res) => {
      if (running) void serveEndpoint(this.deps.authority, this.deps.logger, running, req, res);
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
    if (endpoint.profile === 'https_web') {
      running = { name: td.name, endpoint, server, sequence: td.bundleSequence, webDigest: web!.digest };
      this.running.set(td.name, running);
      this.deps.logger.info({ event: 'bundle_endpoint.started', trustDomain: td.name, listen: endpoint.listen, url: endpoint.url, profile: endpoint.profile, certFile: endpoint.certFile, fingerprint: web!.fingerprint, notAfter: web!.notAfter.toISOString() }, `bundle endpoint of ${td.name} listening on ${endpoint.listen}`);
      return;
    }
    let svid: ServingSvid;
    try {
      svid = await this.issue(td, endpoint);
    } catch (err) {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      throw err;
    }
    server.setSecureContext(svidContext(svid));
    running = { name: td.name, endpoint, svid, sequence: td.bundleSequence, server };
    this.running.set(td.name, running);
    this.deps.logger.info({ event: 'bundle_endpoint.started', trustDomain: td.name, listen: endpoint.listen, url: endpoint.url, profile: endpoint.profile, spiffeId: endpoint.spiffeId, serial: svid.serial }, `bundle endpoint of ${td.name} listening on ${endpoint.listen}`);
  }

  /**
   * Reads every https_web endpoint's files again and serves a changed pair. A pair that cannot be
   * served (missing, unreadable, the key not the certificate's) leaves the last good one serving; it
   * is logged when it is still so on the next check, since a replacement file by file is half done
   * for a moment, and once per distinct problem.
   */
  private checkWebFiles(): void {
    this.pass = this.pass.then(() => {
      for (const r of this.running.values()) {
        if (this.stopped || r.endpoint.profile !== 'https_web') continue;
        this.reloadWeb(r, r.endpoint);
      }
    });
  }

  private reloadWeb(r: Running, endpoint: WebBundleEndpoint): void {
    try {
      const pair = this.deps.webCerts.loadPair(endpoint.certFile, endpoint.keyFile);
      if (r.webFailure?.logged) this.deps.logger.info({ trustDomain: r.name }, 'the bundle endpoint certificate files can be served again');
      r.webFailure = undefined;
      if (pair.digest === r.webDigest) return;
      r.server.setSecureContext({ ...TLS, key: pair.key, cert: pair.cert });
      r.webDigest = pair.digest;
      this.deps.logger.info({ event: 'bundle_endpoint.certificate_reloaded', trustDomain: r.name, certFile: endpoint.certFile, fingerprint: pair.fingerprint, notAfter: pair.notAfter.toISOString() }, `bundle endpoint of ${r.name} serves a new certificate`);
    } catch (err) {
      const message = isCairnError(err) ? err.message : 'the files could not be read';
      const seen = r.webFailure;
      if (seen?.message === message) {
        if (!seen.logged) {
          seen.logged = true;
          this.deps.logger.error({ trustDomain: r.name, certFile: endpoint.certFile, keyFile: endpoint.keyFile }, `the bundle endpoint of ${r.name} keeps serving its last good certificate: ${message}`);
        }
      } else {
        r.webFailure = { message, logged: false };
      }
    }
  }

  private async renew(r: Running, td: TrustDomain): Promise<void> {
    if (td.bundleEndpoint?.profile !== 'https_spiffe') return;
    const svid = await this.issue(td, td.bundleEndpoint);
    r.server.setSecureContext(svidContext(svid));
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
}
