/**
 * A run of failures of one repeated operation (a sync, a renewal): when to try next, and what to say
 * about it. Retries back off exponentially, capped, with jitter so a fleet that lost its CA together
 * does not come back in lock-step; the first failure of a streak is news and the rest are not, until
 * the streak ends and its summary (how long, how many attempts) is.
 */
export interface BackoffOptions {
  /** Delay after the first failure. */
  readonly baseMs?: number;
  readonly capMs?: number;
  /** [0, 1): the delay is scaled into [½, 1) of its nominal value ("equal jitter"). */
  readonly jitter?: () => number;
}

export interface StreakFailure {
  /** The first failure of a streak: log it. */
  readonly first: boolean;
  /** Failures so far in this streak, this one included. */
  readonly attempts: number;
  readonly retryInMs: number;
}

export interface StreakEnd {
  /** From the first failure to the success that ended the streak. */
  readonly failedForMs: number;
  /** Failed attempts in the streak. */
  readonly attempts: number;
}

export class FailureStreak {
  private startedAt: number | undefined;
  private attempts = 0;
  private nextAt = 0;

  constructor(private readonly options: BackoffOptions = {}) {}

  get failing(): boolean {
    return this.startedAt !== undefined;
  }

  /**
   * Whether the backoff allows an attempt at `nowMs` (always, outside a streak). A next attempt further
   * away than the cap means the clock was stepped back: retry rather than wait out the step.
   */
  due(nowMs: number): boolean {
    return nowMs >= this.nextAt || this.nextAt - nowMs > (this.options.capMs ?? 30_000);
  }

  failed(nowMs: number): StreakFailure {
    const first = this.startedAt === undefined;
    if (first) this.startedAt = nowMs;
    this.attempts++;
    const base = this.options.baseMs ?? 1000;
    const cap = this.options.capMs ?? 30_000;
    const nominal = Math.min(cap, base * 2 ** Math.min(this.attempts - 1, 30));
    const retryInMs = Math.round(nominal * (0.5 + 0.5 * (this.options.jitter ?? Math.random)()));
    this.nextAt = nowMs + retryInMs;
    return { first, attempts: this.attempts, retryInMs };
  }

  /** A success: the streak's summary when one was running, else undefined. */
  succeeded(nowMs: number): StreakEnd | undefined {
    const started = this.startedAt;
    const attempts = this.attempts;
    this.startedAt = undefined;
    this.attempts = 0;
    this.nextAt = 0;
    return started === undefined ? undefined : { failedForMs: nowMs - started, attempts };
  }
}
