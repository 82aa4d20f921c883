import { describe, expect, it } from 'vitest';
import type { DirectCall } from '../../../workload-api/direct/call.js';
import { StateStreams } from '../../../workload-api/direct/streams.js';
import type { Workload, WorkloadApiPorts, WorkloadSnapshot } from '../../../workload-api/ports.js';
import { Shutdown } from '../../../workload-api/service.js';
import { StateCache } from '../../../workload-api/states.js';

/**
 * The direct path's fan-out of a change to every open stream: written a slice of streams per turn
 * of the event loop (node:http2 sends a session's writes only between turns, and other calls wait
 * for a turn to end), and correct when the state changes again in the middle of a pass.
 */
const TD = 'unit.test';
const snapshot = (tag: string): WorkloadSnapshot => ({
  x509Svids: [{ spiffeId: `spiffe://${TD}/w`, chain: [Buffer.from(`cert-${tag}`)], privateKey: Buffer.from('key') }],
  federatedTrustDomains: [],
});
const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

function fixture(streams: number, perTurn: number) {
  const listeners = new Set<() => void>();
  let snap = snapshot('A');
  const ports: WorkloadApiPorts = {
    ready: () => true,
    attestConnection: () => {
      throw new Error('unused');
    },
    trustDomain: () => TD,
    bundle: (td) => (td === TD ? { trustDomain: TD, x509Authorities: [Buffer.from('ca')], jwtAuthorities: [] } : undefined),
    onChange: (l) => {
      listeners.add(l);
      return () => listeners.delete(l);
    },
    now: () => new Date(0),
  };
  const workload: Workload = { snapshot: () => snap, jwtSvids: async () => [] };
  const fanOut = new StateStreams({ ports, cache: new StateCache(ports), shutdown: new Shutdown() }, perTurn);
  /** Per stream, the tag of each state it was sent, in order. */
  const received: string[][] = [];
  for (let i = 0; i < streams; i++) {
    const got: string[] = [];
    received.push(got);
    const call = {
      isOpen: true,
      onEnd: undefined,
      send: (frame: Buffer) => {
        got.push(/cert-(\w)/.exec(frame.toString('latin1'))![1]!);
        return true;
      },
      fail: (err: unknown) => {
        throw err;
      },
    };
    fanOut.add(call as unknown as DirectCall, workload, 'x509');
  }
  const change = (tag: string): void => {
    snap = snapshot(tag);
    listeners.forEach((l) => l());
  };
  const holding = (tag: string): number => received.filter((r) => r.at(-1) === tag).length;
  return { received, change, holding };
}

describe('StateStreams: a change fanned out to many open streams', () => {
  it('writes a slice of streams per turn of the event loop, reaching every stream', async () => {
    const f = fixture(350, 100);
    expect(f.holding('A')).toBe(350); // each stream's first state, as it opened
    f.change('B');
    expect(f.holding('B')).toBe(0); // not in the turn that announced the change
    await turn();
    expect(f.holding('B')).toBe(100); // one slice, then the event loop runs other work
    await turn();
    expect(f.holding('B')).toBe(200);
    for (let i = 0; i < 3; i++) await turn();
    expect(f.holding('B')).toBe(350);
    expect(f.received.every((r) => r.join('') === 'AB')).toBe(true);
  });

  it('a change in the middle of a pass: every stream ends with the newest state, none gets a state twice or an older one after it', async () => {
    const f = fixture(350, 100);
    f.change('B');
    await turn(); // the first 100 streams hold B
    f.change('C');
    f.change('D'); // two changes in one turn are one more pass
    for (let i = 0; i < 10; i++) await turn();
    expect(f.holding('D')).toBe(350);
    for (const [i, r] of f.received.entries()) expect(r.join('')).toBe(i < 100 ? 'ABD' : 'AD');
  });

  it('a change that leaves the state as it was writes nothing', async () => {
    const f = fixture(150, 100);
    f.change('A'); // a new snapshot with the same bytes
    for (let i = 0; i < 4; i++) await turn();
    expect(f.received.every((r) => r.join('') === 'A')).toBe(true);
  });
});
