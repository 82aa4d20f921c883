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
      try {
        await client.query('BEGIN');
        const result = await fn(wrap(client));
        await client.query('COMMIT');
        return result;
      } catch (err) {
        await client.query('ROLLBACK').catch(() => undefined);
        throw err;
      } finally {
        client.release();
      }
    },
    async listen(channel, onNotify): Promise<Unlisten> {
      const client = await guard(() => pool.connect());
      const handler = (msg: pg.Notification): void => {
        if (msg.channel === channel) onNotify(msg.payload ?? '');
      };
      client.on('notification', handler);
      client.on('error', () => undefined);
      await client.query(`LISTEN ${pg.escapeIdentifier(channel)}`);
      return async () => {
        client.off('notification', handler);
        await client.query(`UNLISTEN ${pg.escapeIdentifier(channel)}`).catch(() => undefined);
        client.release();
      };
    },
    close: () => pool.end(),
  };
}
