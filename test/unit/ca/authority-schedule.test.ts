import { describe, expect, it } from 'vitest';
import { activationDue, activationPoint, LAST_RESORT_MS, preparationPoint } from '../../../ca/authority/schedule.js';
import type { AuthorityKey } from '../../../ca/authority/store.js';

const T0 = Date.parse('2026-06-01T12:00:00Z');
const MIN = 60_000;
const HOUR = 60 * MIN;

function key(notBeforeMs: number, lifetimeMs: number, createdAtMs = notBeforeMs, status: AuthorityKey['status'] = 'active'): AuthorityKey {
  return {
    id: `k${notBeforeMs}`,
    trustDomain: 'td.test',
    kind: 'x509',
    keyType: 'ec-p256',
    status,
    publicKey: Buffer.alloc(0),
    certificate: Buffer.alloc(0),
    privateKeySealed: Buffer.alloc(0),
    notBefore: new Date(notBeforeMs),
    notAfter: new Date(notBeforeMs + lifetimeMs),
    createdAt: new Date(createdAtMs),
  };
}

describe('automatic rotation schedule (pure)', () => {
  it('a 1 h CA with a 30 min window: prepared at 20 min, activation point at 50 min', () => {
    const active = key(T0, HOUR);
    expect(activationPoint(active).getTime()).toBe(T0 + 50 * MIN);
    expect(preparationPoint(active, 1800).getTime()).toBe(T0 + 20 * MIN);
  });

  it('a long-lived CA prepares at half life (SPIRE), well before the window asks', () => {
    const active = key(T0, 24 * HOUR);
    expect(preparationPoint(active, 1800).getTime()).toBe(T0 + 12 * HOUR);
    expect(activationPoint(active).getTime()).toBe(T0 + 20 * HOUR);
  });

  it('no window: SPIRE\'s schedule unchanged', () => {
    const active = key(T0, 6 * HOUR);
    expect(preparationPoint(active, 0).getTime()).toBe(T0 + 3 * HOUR);
  });

  it('activation waits for both the activation point and the window', () => {
    const active = key(T0, HOUR);
    const prepared = key(T0 + 21 * MIN, HOUR, T0 + 21 * MIN, 'prepared');
    expect(activationDue(active, prepared, 1800, new Date(T0 + 45 * MIN))).toBe('wait'); // before the point
    expect(activationDue(active, prepared, 1800, new Date(T0 + 50.5 * MIN))).toBe('wait'); // published 29.5 min
    expect(activationDue(active, prepared, 1800, new Date(T0 + 51 * MIN))).toBe('activate');
  });

  it('a trust domain is never left without a signing key: the window yields when the active key is expiring or gone', () => {
    const active = key(T0, HOUR);
    const late = key(T0 + 58 * MIN, HOUR, T0 + 58 * MIN, 'prepared');
    expect(activationDue(active, late, 1800, new Date(T0 + HOUR - LAST_RESORT_MS - 1))).toBe('wait');
    expect(activationDue(active, late, 1800, new Date(T0 + HOUR - LAST_RESORT_MS))).toBe('activate_early');
    expect(activationDue(undefined, late, 1800, new Date(T0 + 59 * MIN))).toBe('activate_early');
    expect(activationDue(undefined, late, 1800, new Date(T0 + 90 * MIN))).toBe('activate');
  });
});
