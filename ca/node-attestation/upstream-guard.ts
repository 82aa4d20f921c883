import type { Clock } from '../../lib/clock.js';
import { CairnError } from '../../lib/errors.js';
import type { Logger } from '../../lib/log.js';

/**
 * A failure of something attestation depends on outside the CA: a Kubernetes API server, a JWKS
 * URL, a credential file of the CA's own. Its message is for the log only: anonymous callers get a
 * generic `attestor_unavailable` instead (no file-exists oracle, no upstream error text).
 */
export class UpstreamError extends Error {
  override readonly name = 'UpstreamError';
}

export interface UpstreamGuardOptions {
  /** Calls to one upstream at once; more wait in a short queue, the rest are refused at once. */
  readonly maxConcurrent: number;
  readonly maxQueued: number;
  /** Consecutive failures that open the circuit, and for how long it stays open. */
  readonly failureThreshold: number;
  readonly openMs: number;
}

export const DEFAULT_UPSTREAM_GUARD: UpstreamGuardOptions = { maxConcurrent: 4, maxQueued: 16, failureThreshold: 3, openMs: 10_000 };

interface State {
  inFlight: number;
  readonly queue: (() => void)[];
  failures: number;
  openUntil: number;
  probing: boolean;
}

const MAX_KEYS = 1000;

export const attestorUnavailable = (retryAfterSeconds: number): CairnError =>
  new CairnError('attestor_unavailable', 'node attestation for this cluster is unavailable right now; retry later', { details: { retryAfterSeconds } });

/**
 * Bounds what anonymous attestation attempts make the CA do to an upstream, per upstream (one
 * configured cluster): a few calls at a time, and a circuit breaker that stops calling it for a
 * short while after consecutive failures (then lets one probe through). Per process.
 */
export class UpstreamGuard {
  private readonly states = new Map<string, State>();

  constructor(private readonly clock: Clock, private readonly logger: Logger, private readonly options: UpstreamGuardOptions = DEFAULT_UPSTREAM_GUARD) {}

  async run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const s = this.stateOf(key);
    const now = this.clock.now().getTime();
    let probe = false;
    if (s.failures >= this.options.failureThreshold) {
      if (now < s.openUntil) throw attestorUnavailable(Math.ceil((s.openUntil - now) / 1000));
      if (s.probing) throw attestorUnavailable(1);
      s.probing = probe = true;
    }
    try {
      await this.acquire(s);
    } catch (err) {
      if (probe) s.probing = false;
      throw err;
    }
    try {
      const result = await fn();
      s.failures = 0;
      return result;
    } catch (err) {
      if (!(err instanceof UpstreamError)) {
        s.failures = 0; // the upstream answered; the caller was refused
        throw err;
      }
      s.failures++;
      const open = s.failures >= this.options.failureThreshold;
      if (open) s.openUntil = this.clock.now().getTime() + this.options.openMs;
      this.logger.warn({ event: 'attestor.upstream_failed', upstream: key, reason: err.message, failures: s.failures, circuitOpen: open }, 'a node attestation upstream failed; callers are told attestor_unavailable');
      throw attestorUnavailable(open ? Math.ceil(this.options.openMs / 1000) : 1);
    } finally {
      if (probe) s.probing = false;
      this.release(s);
    }
  }

  private stateOf(key: string): State {
    let s = this.states.get(key);
    if (!s) {
      if (this.states.size >= MAX_KEYS) {
        for (const [k, v] of this.states) if (v.inFlight === 0 && v.failures === 0) this.states.delete(k);
      }
      s = { inFlight: 0, queue: [], failures: 0, openUntil: 0, probing: false };
      this.states.set(key, s);
    }
    return s;
  }

  private acquire(s: State): Promise<void> {
    if (s.inFlight < this.options.maxConcurrent) {
      s.inFlight++;
      return Promise.resolve();
    }
    if (s.queue.length >= this.options.maxQueued) return Promise.reject(attestorUnavailable(1));
    return new Promise((resolve) => s.queue.push(resolve));
  }

  /** Hands the slot to the next waiter, if any. */
  private release(s: State): void {
    const next = s.queue.shift();
    if (next) next();
    else s.inFlight--;
  }
}
