import { randomBytes } from 'node:crypto';
import type { Clock } from '../../lib/clock.js';
import { systemClock } from '../../lib/clock.js';
import { systemRandom } from '../../lib/random.js';
import { buildCaApp, type CaApp } from '../../ca/http/app.js';
import { buildCaCore, type CaCore } from '../../ca/services.js';
import { capturingLogger } from './logs.js';
import { testDatabase, type TestDatabase } from './db.js';

export interface TestCa {
  readonly core: CaCore;
  readonly app: CaApp;
  /** Base URL of the real HTTP listener on 127.0.0.1. */
  readonly url: string;
  readonly adminToken: string;
  readonly database: TestDatabase;
  readonly logs: () => string;
  /** fetch against the CA with the admin token. */
  admin(path: string, init?: { method?: string; body?: unknown; headers?: Record<string, string> }): Promise<Response>;
  close(): Promise<void>;
}

/** A CA over a fresh database of the store under test, listening on a real loopback port. */
export async function startTestCa(options: { clock?: Clock; publicUrl?: string } = {}): Promise<TestCa> {
  const database = await testDatabase();
  const { logger, text } = capturingLogger();
  const core = buildCaCore({ db: database.db, clock: options.clock ?? systemClock, random: systemRandom, logger, kek: randomBytes(32) });
  const adminToken = (await core.adminAuth.bootstrap(undefined))!;
  const app = await buildCaApp(core, { logger, publicUrl: options.publicUrl });
  await app.app.listen({ host: '127.0.0.1', port: 0 });
  const address = app.app.server.address();
  const url = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
  return {
    core,
    app,
    url,
    adminToken,
    database,
    logs: text,
    admin(path, init = {}) {
      return fetch(url + path, {
        method: init.method ?? (init.body === undefined ? 'GET' : 'POST'),
        headers: {
          authorization: `Bearer ${adminToken}`,
          ...(init.body === undefined ? {} : { 'content-type': 'application/json' }),
          ...init.headers,
        },
        ...(init.body === undefined ? {} : { body: typeof init.body === 'string' ? init.body : JSON.stringify(init.body) }),
      });
    },
    async close() {
      await app.app.close();
      await database.close();
    },
  };
}
