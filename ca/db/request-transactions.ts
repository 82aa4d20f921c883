import { AsyncLocalStorage } from 'node:async_hooks';
import { CairnError } from '../../lib/errors.js';
import type { Database, Queryable, QueryResult } from './database.js';
import { guard } from './errors.js';

/** Thrown into the base transaction to roll it back; never seen by callers. */
const ROLLBACK = Symbol('rollback');

type State = 'open' | 'committed' | 'abandoned';

/**
 * One request's queries as one transaction, opened at its first query. Stores keep calling
 * `db.query` and `db.transaction`; inside the request those become savepoints of this transaction,
 * so each statement and each store transaction still fails alone (a unique violation answered 409
 * does not abort the rest), and nothing commits until `finish` has written what the request must
 * leave behind with it — its audit entry. Operations run one at a time, in order.
 */
export class RequestTransaction {
  private state: State = 'open';
  private tx: Promise<Queryable> | undefined;
  private outcome: Promise<unknown> | undefined;
  private release: ((commit: boolean) => void) | undefined;
  private tail: Promise<unknown> = Promise.resolve();
  private savepoints = 0;

  constructor(
    private readonly base: Database,
    private readonly storage: AsyncLocalStorage<RequestTransaction>,
    private readonly onEnd: () => void,
    private readonly slots: Slots,
  ) {}

  query<R>(sql: string, params?: readonly unknown[]): Promise<QueryResult<R>> {
    return this.exclusive(async () => {
      if (this.state === 'committed') return this.base.query<R>(sql, params);
      const tx = await this.connection();
      // the pool's own query() translates driver errors; so does this one, for the same stores
      const run = (): Promise<QueryResult<R>> => tx.query<R>(sql, params);
      return this.savepoint(() => (this.base.kind === 'postgres' ? guard(run) : run()));
    });
  }

  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
    return this.exclusive(async () => {
      if (this.state === 'committed') return this.base.transaction(fn);
      const tx = await this.connection();
      // Inside `fn` the store has its `tx`; the outer db there is the pool again, exactly as without
      // a request transaction (a query through it would otherwise wait on this lock for ever).
      return this.savepoint(() => this.storage.exit(() => fn(tx)));
    });
  }

  /**
   * Writes `last` in the transaction and commits. A request that made no query has no
   * transaction: `last` then runs on its own. When `last` or the commit fails, nothing the
   * request did is kept, and the error is thrown.
   */
  finish(last: (q: Queryable) => Promise<void>): Promise<void> {
    return this.exclusive(async () => {
      if (this.state !== 'open') throw new CairnError('store_unavailable', 'the request\'s transaction has already ended');
      try {
        if (!this.tx) {
          await last(this.base);
          this.state = 'committed';
          return;
        }
        const tx = await this.tx;
        await last(tx);
        this.state = 'committed';
        this.release?.(true);
        await this.outcome;
      } catch (err) {
        this.state = 'abandoned';
        this.release?.(false);
        await this.outcome?.catch(() => undefined);
        throw err;
      } finally {
        this.onEnd();
      }
    });
  }

  /** Rolls back whatever the request did, when it ends without `finish` (or after it: then nothing happens). */
  abandon(): Promise<void> {
    if (this.state !== 'open') return Promise.resolve();
    // Marked at once: while the request's context is tracked, its late queries fail rather than autocommit.
    this.state = 'abandoned';
    return this.exclusive(async () => {
      this.release?.(false);
      await this.outcome?.catch(() => undefined);
      this.onEnd();
    });
  }

  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.tail.then(fn, fn);
    this.tail = run.catch(() => undefined);
    return run;
  }

  private connection(): Promise<Queryable> {
    if (this.state === 'abandoned') return Promise.reject(new CairnError('store_unavailable', 'the request\'s transaction was rolled back'));
    this.tx ??= this.slots.take().then(() => this.open());
    return this.tx;
  }

  /** BEGIN, once this request holds one of the slots; the slot is given back when the transaction ends. */
  private open(): Promise<Queryable> {
    if (this.state === 'abandoned') {
      this.slots.give();
      return Promise.reject(new CairnError('store_unavailable', 'the request\'s transaction was rolled back'));
    }
    return new Promise<Queryable>((resolve, reject) => {
      this.outcome = this.base.transaction(
        (tx) =>
          new Promise<void>((commit, rollback) => {
            this.release = (ok) => (ok ? commit() : rollback(ROLLBACK));
            resolve(tx);
          }),
      );
      // BEGIN failing (the database away) fails the request's queries; a rollback we asked for is no error
      this.outcome.catch((err: unknown) => {
        if (err !== ROLLBACK) reject(err);
      });
      void this.outcome.catch(() => undefined).finally(() => this.slots.give());
    });
  }

  private async savepoint<T>(fn: () => Promise<T>): Promise<T> {
    const tx = await this.connection();
    const name = `cairn_request_${++this.savepoints}`;
    await tx.query(`SAVEPOINT ${name}`);
    try {
      const result = await fn();
      await tx.query(`RELEASE SAVEPOINT ${name}`);
      return result;
    } catch (err) {
      await tx.query(`ROLLBACK TO SAVEPOINT ${name}`).catch(() => undefined);
      throw err;
    }
  }
}

/**
 * A first-come, first-served count of request transactions that may hold a database connection at
 * once. Each one holds its connection for the whole request, also while it waits for the entry
 * write lock; without a cap, a burst of admin writes (a pipeline registering thousands of entries)
 * takes every connection of the pool, and agents' syncs and authentications wait out the pool's
 * timeout and fail. Requests over the cap wait here, holding nothing.
 */
export class Slots {
  private free: number;
  private readonly waiting: (() => void)[] = [];

  constructor(readonly size: number) {
    if (!Number.isInteger(size) || size < 1) throw new TypeError('slots must be a whole number ≥ 1');
    this.free = size;
  }

  /** Request transactions waiting for a slot right now. */
  get queued(): number {
    return this.waiting.length;
  }

  take(): Promise<void> {
    if (this.free > 0) {
      this.free--;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  give(): void {
    const next = this.waiting.shift();
    if (next) next();
    else this.free++;
  }
}

/** Of the pool's 10 connections (ca/db/pg.ts), at most this many serve admin writes at once. */
export const REQUEST_TRANSACTION_SLOTS = 4;

/**
 * Hands out request transactions and the Database every store uses: outside a request
 * transaction it is the database itself; inside one (see RequestTransaction) it routes there.
 * The async context is tracked only while a request transaction is in flight: Node 20's
 * AsyncLocalStorage costs every promise in the process while enabled.
 */
export class RequestTransactions {
  private readonly storage = new AsyncLocalStorage<RequestTransaction>();
  private inFlight = 0;
  readonly db: Database;

  private readonly slots: Slots;

  constructor(
    private readonly base: Database,
    slots = REQUEST_TRANSACTION_SLOTS,
  ) {
    this.slots = new Slots(slots);
    const current = (): RequestTransaction | undefined => {
      if (this.inFlight === 0) return undefined;
      // a timer or task started inside a request that has since committed goes on to the database
      // itself (RequestTransaction.query); one that was rolled back gets errors, never an autocommit
      return this.storage.getStore();
    };
    this.db = {
      kind: base.kind,
      query: (sql, params) => current()?.query(sql, params) ?? base.query(sql, params),
      transaction: (fn) => current()?.transaction(fn) ?? base.transaction(fn),
      listen: (channel, onNotify, onLost) => base.listen(channel, onNotify, onLost),
      close: () => base.close(),
    };
  }

  /** Runs `next` (the rest of the request) inside a new request transaction, which it returns. */
  begin(next: () => void): RequestTransaction {
    let ended = false;
    const scope = new RequestTransaction(
      this.base,
      this.storage,
      () => {
        if (ended) return;
        ended = true;
        if (--this.inFlight === 0) this.storage.disable();
      },
      this.slots,
    );
    this.inFlight++;
    this.storage.run(scope, next);
    return scope;
  }
}
