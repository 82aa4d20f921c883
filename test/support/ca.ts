import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Clock } from '../../lib/clock.js';
import { startCa, type CaConfig, type CaHandle } from '../../ca/main.js';
import type { CaCore } from '../../ca/services.js';
import type { CaApp } from '../../ca/http/app.js';
import type { KubeCredentialSet } from '../../ca/node-attestation/kube-credentials.js';
import type { ListenerLimits } from '../../ca/http/listener.js';
import { capturingLogger } from './logs.js';
import { createPgDatabase, storeKind } from './db.js';

export interface TestCa {
  readonly core: CaCore;
  readonly app: CaApp;
  readonly tlsApp: CaApp;
  /** Base URL of the plain HTTP listener on 127.0.0.1. */
  readonly url: string;
  /** Base URL of the TLS listener (agents, devices). */
  readonly tlsUrl: string;
  readonly adminToken: string;
  readonly handle: CaHandle;
  readonly dataDir: string;
  /** Connection string when the store is a real PostgreSQL. */
  readonly databaseUrl: string | undefined;
  readonly logs: () => string;
  /** fetch against the CA with the admin token. */
  admin(path: string, init?: { method?: string; body?: unknown; headers?: Record<string, string> }): Promise<Response>;
  /** Stops the CA process's listeners, keeping its data and database. */
  stop(): Promise<void>;
  /** Starts it again on the same data, database and TLS port (agents keep their CA URL). */
  restart(): Promise<void>;
  close(): Promise<void>;
}

/** A real CA (both listeners on loopback ports) over a fresh database of the store under test. */
export async function startTestCa(options: { clock?: Clock; publicUrl?: string; databaseUrl?: string; kubeCredentials?: KubeCredentialSet[]; limits?: Partial<ListenerLimits>; kekFile?: string; config?: Partial<CaConfig> } = {}): Promise<TestCa> {
  const dataDir = mkdtempSync(join(tmpdir(), 'cairn-ca-'));
  const pg = options.databaseUrl || storeKind() !== 'postgres' ? undefined : await createPgDatabase();
  const databaseUrl = options.databaseUrl ?? pg?.url;
  const { logger, text } = capturingLogger();
  const start = (tlsPort: number): Promise<CaHandle> =>
    startCa(
      { dataDir, databaseUrl, host: '127.0.0.1', port: 0, tlsPort, publicUrl: options.publicUrl, rotationIntervalMs: 3_600_000, kubeCredentials: options.kubeCredentials, limits: options.limits, kekFile: options.kekFile, ...options.config },
      { logger, ...(options.clock ? { clock: options.clock } : {}) },
    );
  let handle: CaHandle | undefined = await start(0);
  const tlsPort = Number(new URL(handle.tlsUrl).port);
  const current = (): CaHandle => {
    if (!handle) throw new Error('the test CA is stopped');
    return handle;
  };
  // a second replica on a shared database finds the bootstrap credential made already: use the first one's
  const tokenFile = join(dataDir, 'admin-token');
  const adminToken = (existsSync(tokenFile) ? readFileSync(tokenFile, 'utf8').trim() : '') || (process.env.CAIRN_ADMIN_TOKEN ?? '');
  return {
    get core() {
      return current().core;
    },
    get app() {
      return current().app;
    },
    get tlsApp() {
      return current().tlsApp;
    },
    get url() {
      return current().url;
    },
    get tlsUrl() {
      return current().tlsUrl;
    },
    get handle() {
      return current();
    },
    adminToken,
    dataDir,
    databaseUrl,
    logs: text,
    admin(path, init = {}) {
      return fetch(current().url + path, {
        method: init.method ?? (init.body === undefined ? 'GET' : 'POST'),
        headers: {
          authorization: `Bearer ${adminToken}`,
          ...(init.body === undefined ? {} : { 'content-type': 'application/json' }),
          ...init.headers,
        },
        ...(init.body === undefined ? {} : { body: typeof init.body === 'string' ? init.body : JSON.stringify(init.body) }),
      });
    },
    async stop() {
      await handle?.close();
      handle = undefined;
    },
    async restart() {
      handle ??= await start(tlsPort);
    },
    async close() {
      await handle?.close();
      await pg?.drop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
