import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import type { ServerResponse } from 'node:http';
import { createServer } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * The fleet bench's raw baseline: a bare node:https server with the CA's TLS settings (P-256 certificate,
 * client certificates requested, TLS ≥ 1.2, keep-alive) answering the agents' long-poll path with a
 * constant "nothing new" after `wait` seconds. No framework, no authentication, no database. On
 * `fanout` it answers every held poll at once with one entry, like a change that touches every agent.
 */

const dir = mkdtempSync(join(tmpdir(), 'cairn-bare-tls-'));
execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', '/CN=bare', '-days', '1',
  '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')], { stdio: 'ignore' });
const key = readFileSync(join(dir, 'key.pem'), 'utf8');
const cert = readFileSync(join(dir, 'cert.pem'), 'utf8');
rmSync(dir, { recursive: true, force: true });

const held = new Set<{ res: ServerResponse; timer: NodeJS.Timeout }>();
const idle = (revision: number): string => JSON.stringify({ revision, full: false, parents: [], entries: [], removed: [] });
let fanouts = 0;

const server = createServer({ key, cert, requestCert: true, rejectUnauthorized: false, minVersion: 'TLSv1.2' }, (req, res) => {
  const url = new URL(req.url ?? '/', 'https://bare');
  const revision = Number(url.searchParams.get('revision') ?? 0);
  const wait = Number(url.searchParams.get('wait') ?? 0);
  const answer = (body: string): void => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  };
  if (wait <= 0) return answer(idle(revision));
  const h = {
    res,
    timer: setTimeout(() => {
      held.delete(h);
      answer(idle(revision));
    }, wait * 1000),
  };
  held.add(h);
  res.on('close', () => {
    clearTimeout(h.timer);
    held.delete(h);
  });
});

server.listen(0, '127.0.0.1', () => {
  const address = server.address();
  process.send!({ type: 'listening', url: `https://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`, cert });
});

process.on('message', (msg: { type: string }) => {
  if (msg.type === 'fanout') {
    fanouts++;
    const entry = {
      id: `bare-${fanouts}`, spiffeId: `spiffe://fleet.test/probe/bare/${fanouts}`, parentId: 'spiffe://fleet.test/pool/all', selectors: ['unix:uid:5000'],
      x509SvidTtl: null, jwtSvidTtl: null, dnsNames: [], hint: null, admin: false, federatesWith: [], expiresAt: null, revision: 1_000_000 + fanouts,
    };
    const body = JSON.stringify({ revision: entry.revision, full: false, parents: [], entries: [entry], removed: [] });
    const n = held.size;
    for (const h of [...held]) {
      clearTimeout(h.timer);
      held.delete(h);
      h.res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      h.res.end(body);
    }
    process.send!({ type: 'fanned', n });
  } else if (msg.type === 'status') {
    server.getConnections((_err, connections) => process.send!({ type: 'status', connections, held: held.size }));
  }
});
process.on('disconnect', () => process.exit(0));
