/**
 * The one seam between our stores and a PostgreSQL: the pg pool against a real server, or the
 * embedded PGlite. Stores see only this interface, so the same SQL runs on both.
 */
export interface QueryResult<R> {
  readonly rows: R[];
  readonly rowCount: number;
}

export interface Queryable {
  query<R = Record<string, unknown>>(sql: string, params?: readonly unknown[]): Promise<QueryResult<R>>;
}

export type Unlisten = () => Promise<void>;

export interface Database extends Queryable {
  readonly kind: 'postgres' | 'embedded';
  /** Runs `fn` in one transaction; commits when it resolves, rolls back when it throws. */
  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T>;
  /**
   * LISTEN on a channel; `onNotify` gets each NOTIFY payload. Where the connection can drop, `onLost`
   * runs when it does, and `onNotify('')` once it is back (notifications in between are lost).
   */
  listen(channel: string, onNotify: (payload: string) => void, onLost?: () => void): Promise<Unlisten>;
  close(): Promise<void>;
}

/** Normalises driver differences (pg returns int8 as string, PGlite as number). */
export function toNumber(value: unknown): number {
  if (typeof value === 'number') return value;
  if (typeof value === 'bigint') return Number(value);
  if (typeof value === 'string') return Number(value);
  throw new TypeError(`not a number: ${typeof value}`);
}

/** pg returns bytea as Buffer, PGlite as Uint8Array. */
export function toBuffer(value: unknown): Buffer {
  if (Buffer.isBuffer(value)) return value;
  if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  throw new TypeError(`not bytes: ${typeof value}`);
}

export function toDate(value: unknown): Date {
  if (value instanceof Date) return value;
  if (typeof value === 'string' || typeof value === 'number') return new Date(value);
  throw new TypeError(`not a date: ${typeof value}`);
}
