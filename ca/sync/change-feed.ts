import type { Clock } from '../../lib/clock.js';
import type { Database, Unlisten } from '../db/database.js';
import { listenForChanges, type Change } from '../db/changes.js';

/**
 * Why a waiter woke, so a long-poll re-reads only that: `entries` (its parents' entries or
 * templates), `bundle` (published keys, hence CRLs and locally hosted foreign bundles), `all`.
 */
export interface Woken {
  entries: boolean;
  bundle: boolean;
  all: boolean;
}

export interface ChangeWaiter {
  /** Notifications this process had received when the waiter was armed. */
  readonly generation: number;
  /**
   * Also wake for entries under these parents. Call it before reading those entries: a change
   * notified earlier is then visible to the read, a later one wakes the waiter.
   */
  watch(parents: readonly string[]): void;
  /** Resolves at the first relevant change since arm(), after `timeoutMs`, or when `signal` aborts. */
  wait(timeoutMs: number, signal?: AbortSignal): Promise<Woken>;
  cancel(): void;
}

interface Waiter {
  readonly trustDomain: string;
  readonly node: string;
  parents: readonly string[];
  fire(reason: keyof Woken): void;
}

/**
 * How long a shared read may be reused without a notification in between: some of what it reads
 * changes with time alone (keys expire, CRLs fall due).
 */
const SHARED_READ_MAX_AGE_MS = 2000;

/**
 * Fans the database's change notifications out to long-polling requests in this process, waking only
 * the ones a change concerns: entries wake the agents serving their parents (directly or through a
 * node alias); a change of the aliases themselves or anything else trust-domain wide wakes that trust
 * domain; a re-attestation its node; a bundle change, a reconnect of the listener or a notification
 * it cannot read everyone (agents of other trust domains may federate with a bundle hosted here).
 * A request arms a waiter *before* it reads the store, so a change that commits between the read and
 * the wait still wakes it.
 *
 * It also counts notifications (`generation`), so reads that every woken request would repeat can be
 * made once and shared (`shared`): a read started after the n-th notification sees every change whose
 * notification came before it, and any later change wakes the waiters it concerns.
 */
export class ChangeFeed {
  private readonly byTrustDomain = new Map<string, Set<Waiter>>();
  private readonly byParent = new Map<string, Set<Waiter>>();
  private readonly byNode = new Map<string, Set<Waiter>>();
  private readonly memos = new Map<string, { generation: number; at: number; value: Promise<unknown> }>();
  private unlisten: Unlisten | undefined;
  private readonly stopping = new AbortController();
  /** Aborted by stop(): long-polls answer at once so the server can close without waiting them out. */
  readonly closing: AbortSignal = this.stopping.signal;
  /** Notifications received so far (a lost listener counts as one). */
  private generation = 0;
  /** False while no LISTEN connection is up: notifications may be missed, so nothing may be reused. */
  private listening = false;

  constructor(
    private readonly db: Database,
    private readonly clock: Clock,
    /** Where an entry under it is a node alias (the trust domain's server ID). */
    private readonly aliasParent: (trustDomain: string) => string,
  ) {}

  /** Long-polls waiting in this process right now. */
  get waiting(): number {
    let n = 0;
    for (const s of this.byTrustDomain.values()) n += s.size;
    return n;
  }

  /** Notifications received so far: tests wait on it to know a change has been heard. */
  get heard(): number {
    return this.generation;
  }

  async start(): Promise<void> {
    this.unlisten = await listenForChanges(
      this.db,
      (change) => this.onChange(change),
      () => {
        this.listening = false;
        this.generation++;
        this.memos.clear();
      },
    );
    this.listening = true;
  }

  /** Long-polls answer at once, and new ones do not wait: for a server about to close its listeners. */
  endLongPolls(): void {
    this.stopping.abort();
    this.wake(this.byTrustDomain.values(), 'all');
  }

  async stop(): Promise<void> {
    this.endLongPolls();
    this.listening = false;
    await this.unlisten?.();
    this.unlisten = undefined;
  }

  arm(trustDomain: string, node: string): ChangeWaiter {
    const woken: Woken = { entries: false, bundle: false, all: false };
    let fired = false;
    let wake: (() => void) | undefined;
    const w: Waiter = {
      trustDomain,
      node,
      parents: [],
      fire: (reason) => {
        woken[reason] = true;
        fired = true;
        wake?.();
      },
    };
    add(this.byTrustDomain, trustDomain, w);
    add(this.byNode, node, w);
    const cancel = (): void => {
      remove(this.byTrustDomain, trustDomain, w);
      remove(this.byNode, node, w);
      for (const p of w.parents) remove(this.byParent, p, w);
    };
    return {
      generation: this.generation,
      cancel,
      watch: (parents) => {
        for (const p of w.parents) remove(this.byParent, p, w);
        w.parents = [...parents];
        for (const p of w.parents) add(this.byParent, p, w);
      },
      wait: (timeoutMs, signal) =>
        new Promise<Woken>((resolve) => {
          const done = (): void => {
            clearTimeout(timer);
            signal?.removeEventListener('abort', done);
            cancel();
            resolve(woken);
          };
          const timer = setTimeout(done, Math.max(0, timeoutMs));
          signal?.addEventListener('abort', done, { once: true });
          wake = done;
          if (fired || signal?.aborted) done();
        }),
    };
  }

  /**
   * One read shared by every caller that needs the store as of notification `generation` or later
   * (a waiter's generation): `load` runs again only after a notification, a lost listener or
   * SHARED_READ_MAX_AGE_MS. A failed read is not kept.
   */
  shared<T>(key: string, generation: number, load: () => Promise<T>): Promise<T> {
    if (!this.listening) return load();
    const now = this.clock.now().getTime();
    const memo = this.memos.get(key);
    if (memo && memo.generation >= generation && now - memo.at < SHARED_READ_MAX_AGE_MS && now >= memo.at) return memo.value as Promise<T>;
    const value = load();
    const entry = { generation: this.generation, at: now, value };
    this.memos.set(key, entry);
    value.catch(() => {
      if (this.memos.get(key) === entry) this.memos.delete(key);
    });
    return value;
  }

  /** `shared` as of now: reused until the next notification (or SHARED_READ_MAX_AGE_MS). */
  current<T>(key: string, load: () => Promise<T>): Promise<T> {
    return this.shared(key, this.generation, load);
  }

  private onChange(change: Change): void {
    this.generation++;
    this.listening = true;
    // Everything read before this notification may be stale for someone: keep the map small.
    this.memos.clear();
    switch (change.kind) {
      case 'unknown':
        return this.wake(this.byTrustDomain.values(), 'all');
      case 'bundle':
        return this.wake(this.byTrustDomain.values(), 'bundle');
      case 'trust-domain':
        return this.wake([this.byTrustDomain.get(change.trustDomain)], 'all');
      case 'node':
        return this.wake([this.byNode.get(change.node)], 'all');
      case 'entries':
        // Entries under the server are node aliases: any agent of the trust domain may gain or lose one.
        if (change.parents.includes(this.aliasParent(change.trustDomain))) return this.wake([this.byTrustDomain.get(change.trustDomain)], 'all');
        return this.wake(change.parents.map((p) => this.byParent.get(p)), 'entries');
    }
  }

  private wake(sets: Iterable<Set<Waiter> | undefined>, reason: keyof Woken): void {
    const all: Waiter[] = [];
    for (const s of sets) if (s) all.push(...s);
    for (const w of all) w.fire(reason);
  }
}

function add<K>(index: Map<K, Set<Waiter>>, key: K, w: Waiter): void {
  let s = index.get(key);
  if (!s) index.set(key, (s = new Set()));
  s.add(w);
}

function remove<K>(index: Map<K, Set<Waiter>>, key: K, w: Waiter): void {
  const s = index.get(key);
  if (!s) return;
  s.delete(w);
  if (s.size === 0) index.delete(key);
}
