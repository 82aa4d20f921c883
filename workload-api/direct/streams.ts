import type { Workload } from '../ports.js';
import { currentState, type WorkloadApiCore } from '../service.js';
import type { Encoded, StateKind } from '../states.js';
import type { DirectCall } from './call.js';

interface OpenStream {
  readonly call: DirectCall;
  readonly workload: Workload;
  readonly kind: StateKind;
  /** The state the caller holds (compared by bytes: a new snapshot may encode the same state). */
  last: Encoded<unknown> | undefined;
  /** Waiting for the stream's buffer to drain; the state current then is sent, not every one in between. */
  draining: boolean;
}

/**
 * How many streams one turn of the event loop writes to before it yields. node:http2 hands a
 * session's writes to its socket only between turns: a rotation written to 10,000 streams in one
 * turn (~100 ms) reaches no caller before all of it is written, and every other call waits meanwhile.
 * In slices the first callers read while the rest are written (BENCHMARKS.md, rotation to 10,000 streams).
 */
export const STREAMS_PER_TURN = 100;

/**
 * Every open FetchX509SVID / FetchX509Bundles / FetchJWTBundles stream of the direct path, under
 * one change subscription: a burst of changes is handled once (on the next turn of the event loop),
 * and each stream then costs a snapshot lookup and, when its state changed, one write of the
 * shared frame, STREAMS_PER_TURN streams a turn. A change during a pass starts another pass once
 * it ends (streams not reached yet already get the newest state; the others are compared again).
 * A stream whose reader stalls gets the latest state when it drains, not a backlog.
 */
export class StateStreams {
  private readonly open = new Set<OpenStream>();
  /** A pass over the open streams is scheduled or under way. */
  private passing = false;
  /** A change arrived during the pass: pass again when it ends. */
  private again = false;
  /** Held only while a stream is open: the host counts listeners to know nobody is left (and tests do). */
  private unsubscribe: (() => void) | undefined;

  constructor(
    private readonly core: WorkloadApiCore,
    private readonly perTurn = STREAMS_PER_TURN,
  ) {
    core.shutdown.subscribe(() => {
      for (const s of this.open) s.call.fail(core.shutdown.reason);
    });
  }

  /** Starts a stream: its first state now, the next ones as they change; the server's shutdown ends it (Unavailable). */
  add(call: DirectCall, workload: Workload, kind: StateKind): void {
    if (!call.isOpen) return;
    if (this.core.shutdown.reason) return call.fail(this.core.shutdown.reason);
    const entry: OpenStream = { call, workload, kind, last: undefined, draining: false };
    this.open.add(entry);
    this.unsubscribe ??= this.core.ports.onChange(() => this.schedule());
    call.onEnd = () => {
      this.open.delete(entry);
      if (this.open.size === 0) {
        this.unsubscribe?.();
        this.unsubscribe = undefined;
      }
    };
    this.push(entry);
  }

  private schedule(): void {
    if (this.passing) {
      this.again = true;
      return;
    }
    this.passing = true;
    // A Set's iterator survives additions (visited, or already pushed by add) and deletions (skipped) between turns.
    const pass = this.open.values();
    const slice = (): void => {
      for (let n = 0; n < this.perTurn; n++) {
        const next = pass.next();
        if (next.done) return this.passEnded();
        this.push(next.value);
      }
      setImmediate(slice);
    };
    setImmediate(slice);
  }

  private passEnded(): void {
    this.passing = false;
    if (!this.again) return;
    this.again = false;
    this.schedule();
  }

  private push(s: OpenStream): void {
    if (s.draining) return;
    let state: Encoded<unknown>;
    try {
      state = currentState(this.core, s.workload, s.kind);
    } catch (err) {
      return s.call.fail(err);
    }
    if (state === s.last || (s.last && state.frame.equals(s.last.frame))) {
      s.last = state;
      return;
    }
    s.last = state;
    if (!s.call.send(state.frame)) {
      s.draining = true;
      s.call.stream.once('drain', () => {
        s.draining = false;
        if (s.call.isOpen) this.push(s);
      });
    }
  }
}
