import { describe, expect, it } from 'vitest';
import { ERROR_CODES } from '../../../lib/errors.js';
import { STATUS_TABLE } from '../../../lib/status.js';

describe('error catalogue', () => {
  it('maps every code to an HTTP status and a gRPC status', () => {
    for (const code of ERROR_CODES) {
      const s = STATUS_TABLE[code];
      expect(s, code).toBeDefined();
      expect(s.http).toBeGreaterThanOrEqual(400);
      expect(s.http).toBeLessThan(600);
      expect(s.grpc).toBeGreaterThan(0);
    }
    expect(Object.keys(STATUS_TABLE).sort()).toEqual([...ERROR_CODES].sort());
  });

  it('keeps 500 for internal faults only', () => {
    const fiveHundreds = ERROR_CODES.filter((c) => STATUS_TABLE[c].http === 500);
    expect(fiveHundreds).toEqual(['internal']);
  });
});
