import { CairnError } from '../../lib/errors.js';
import { METRICS_PATH } from '../../lib/metrics-listener.js';
import { isLoopbackAddress } from '../../lib/net.js';
import type { App } from '../http/types.js';
import type { CaMetrics } from './ca-metrics.js';


/**
 * Prometheus text on the plain listener, to loopback callers only: scraping needs no credential, so
 * by default only the CA's own host (or pod) sees it. `--metrics-listen` serves it on a listener of
 * its own, to whoever can reach that address.
 */
export function registerMetricsRoute(app: App, metrics: CaMetrics): void {
  app.get(METRICS_PATH, { schema: { hide: true } }, async (req, reply) => {
    // A reverse proxy on this host makes every caller look local: a forwarded request is not local.
    if (!isLoopbackAddress(req.socket.remoteAddress) || req.headers['x-forwarded-for'] !== undefined || req.headers.forwarded !== undefined) {
      throw new CairnError('permission_denied', 'metrics are served to loopback callers only on this listener; start the CA with --metrics-listen HOST:PORT to serve them on a listener of their own');
    }
    return reply.header('content-type', metrics.contentType).send(await metrics.text());
  });
}
