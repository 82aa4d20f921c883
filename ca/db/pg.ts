import pg from 'pg';
import type { Database, Queryable, QueryResult, Unlisten } from './database.js';
import { guard } from './errors.js';

export interface PostgresOptions {
  connectionString: string;
  maxConnections?: number;
  /** Fail queries fast when the server is gone, so callers answer 503 instead of hanging. */
  connectionTimeoutMillis?: number;
  statementTimeoutMillis?: number;
}

function wrap(client: pg.Pool | pg.PoolClient): Queryable {
  return {
    async query<R>(sql: string, params?: readonly unknown[]): Promise<QueryResult<R>> {
      const res = await client.query(sql, params as unknown[] | undefined);
      return { rows: res.rows as R[], rowCount: res.rowCount ?? 0 };
    },
  };
}

export function openPostgres(options: PostgresOptions): Database {
  const pool = new pg.Pool({
    connectionString: options.connectionString,
    max: options.maxConnections ?? 10,
    connectionTimeoutMillis: options.connectionTimeoutMillis ?? 5000,
    statement_timeout: options.statementTimeoutMillis ?? 15000,
    // statement_timeout is the server's own clock: a server that hangs (frozen, partitioned away)
    // never fires it, and the request would wait for TCP to give up, hours later. This one is ours.
    query_timeout: (options.statementTimeoutMillis ?? 15000) + 1000,
    keepAlive: true,
    idleTimeoutMillis: 30000,
  });
  // An idle client losing its server emits here; without a listener the process would crash.
  pool.on('error', () => undefined);
  const direct = wrap(pool);
  return {
    kind: 'postgres',
    query: (sql, params) => guard(() => direct.query(sql, params)),
    async transaction(fn) {
      const client = await guard(() => pool.connect());
      // A checked-out client whose server goes away emits 'error'; with no listener that is an
      // uncaught exception, i.e. a CA crash on every database restart during a transaction.
      let broken: Error | undefined;
      const onError = (err: Error): void => {
        broken = err;
      };
      client.on('error', onError);
      try {
        // BEGIN and COMMIT leave here as domain errors too: a server going away at either is a 503
        // (store_unavailable), not an unexpected failure answered 500.
        await guard(() => client.query('BEGIN'));
        const result = await fn(wrap(client));
        await guard(() => client.query('COMMIT'));
        return result;
      } catch (err) {
        // A statement that timed out on our side leaves the connection in an unknown state (the server
        // may be hung): destroy it rather than wait another timeout for a ROLLBACK.
        if (!broken && err instanceof Error && err.message === 'Query read timeout') broken = err;
        if (!broken) await client.query('ROLLBACK').catch(() => undefined);
        throw err;
      } finally {
        if (!broken) client.off('error', onError);
        // A broken connection is destroyed, not pooled; its listener stays for any late error.
        client.release(broken);
      }
    },
    listen: (channel, onNotify, onLost) => listenResiliently(pool, channel, onNotify, onLost),
    close: () => pool.end(),
  };
}

const RELISTEN_DELAYS_MS = [250, 500, 1000, 2000, 5000];

/**
 * LISTEN on a dedicated connection that comes back by itself: when the server goes away (restart,
 * failover, network), the connection is dropped and re-established with backoff. NOTIFYs sent while
 * it was down are lost, so a successful reconnect calls `onNotify('')` once: listeners re-read
 * rather than trust that nothing changed. Without this, long-polls would only learn of changes when
 * they time out, for as long as the process lives.
 */
async function listenResiliently(pool: pg.Pool, channel: string, onNotify: (payload: string) => void, onLost?: () => void): Promise<Unlisten> {
  const listenSql = `LISTEN ${pg.escapeIdentifier(channel)}`;
  const handler = (msg: pg.Notification): void => {
    if (msg.channel === channel) onNotify(msg.payload ?? '');
  };
  let current: { client: pg.PoolClient; detach: () => void } | undefined;
  let closed = false;
  let retry: NodeJS.Timeout | undefined;
  let failures = 0;

  const attach = async (): Promise<void> => {
    const client = await guard(() => pool.connect());
    let dropped = false;
    // The listener stays attached for good (drop is idempotent): pg may emit 'error' more than once
    // for one lost connection, and an 'error' without a listener would crash the process.
    const drop = (): void => {
      if (dropped) return;
      dropped = true;
      client.off('notification', handler);
      const wasListening = current?.client === client;
      if (wasListening) current = undefined;
      client.release(new Error('LISTEN connection lost')); // destroy it: never back into the pool
      // A failed attach is retried by whoever called it; a lost listener by us.
      if (wasListening && !closed) {
        onLost?.();
        schedule();
      }
    };
    client.on('notification', handler);
    client.on('error', drop);
    client.on('end', drop);
    try {
      await client.query(listenSql);
    } catch (err) {
      drop();
      throw err;
    }
    current = {
      client,
      detach: () => {
        dropped = true;
        client.off('notification', handler);
        client.off('end', drop);
      },
    };
  };
  const schedule = (): void => {
    if (retry || closed) return;
    const delay = RELISTEN_DELAYS_MS[Math.min(failures, RELISTEN_DELAYS_MS.length - 1)]!;
    retry = setTimeout(() => {
      retry = undefined;
      if (closed) return;
      attach().then(
        () => {
          failures = 0;
          onNotify('');
        },
        () => {
          failures++;
          schedule();
        },
      );
    }, delay);
    retry.unref();
  };

  await attach();
  return async () => {
    closed = true;
    if (retry) clearTimeout(retry);
    const held = current;
    current = undefined;
    if (!held) return;
    held.detach();
    await held.client.query(`UNLISTEN ${pg.escapeIdentifier(channel)}`).catch(() => undefined);
    held.client.release();
  };
}
