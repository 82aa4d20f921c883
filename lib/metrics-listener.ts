import { createServer, type Server } from 'node:http';

export const METRICS_PATH = '/metrics';

/** A Prometheus registry, or anything that renders its text. */
export interface MetricsSource {
  text(): Promise<string>;
  readonly contentType: string;
}

/**
 * A listener of its own for Prometheus (`--metrics-listen` of the CA and the agent), answering GET /metrics and nothing
 * else, with the same kind of timeouts as the other listeners: a scraper that stalls is cut off.
 */
export async function startMetricsListener(source: MetricsSource, host: string, port: number, onError: (err: unknown) => void): Promise<{ readonly url: string; close(): Promise<void> }> {
  const server: Server = createServer({ requestTimeout: 30_000, headersTimeout: 10_000, keepAliveTimeout: 5_000 }, (req, res) => {
    if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== METRICS_PATH) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end(`only GET ${METRICS_PATH} is served here\n`);
      return;
    }
    source.text().then(
      (text) => res.writeHead(200, { 'content-type': source.contentType }).end(text),
      (err: unknown) => {
        onError(err);
        res.writeHead(500, { 'content-type': 'text/plain' }).end('metrics could not be collected\n');
      },
    );
  });
  server.maxConnections = 64;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address();
  const bound = typeof address === 'object' && address ? address.port : port;
  const shown = host.includes(':') ? `[${host}]` : host;
  return {
    url: `http://${shown === '0.0.0.0' || shown === '[::]' ? '127.0.0.1' : shown}:${bound}${METRICS_PATH}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
