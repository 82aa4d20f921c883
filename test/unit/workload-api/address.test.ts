import { describe, expect, it } from 'vitest';
import { socketPathOf, WorkloadApiClient } from '../../../workload-api/client.js';

describe('Workload API addresses (SPIFFE_ENDPOINT_SOCKET)', () => {
  it.each([
    ['unix:///run/spire/sockets/agent.sock', '/run/spire/sockets/agent.sock'],
    ['unix:/tmp/agent.sock', '/tmp/agent.sock'],
    ['unix:///tmp/with%20space.sock', '/tmp/with space.sock'],
  ])('accepts %s', (address, path) => {
    expect(socketPathOf(address)).toBe(path);
  });

  it.each([
    ['tcp://127.0.0.1:8000', /unix scheme/],
    ['unix://host/tmp/a.sock', /nothing else/],
    ['unix://user@/tmp/a.sock', /not a URI|nothing else/],
    ['unix:///tmp/a.sock?x=1', /nothing else/],
    ['unix:///tmp/a.sock#frag', /nothing else/],
    ['unix:relative.sock', /absolute socket path/],
    ['unix:///', /absolute socket path/],
    ['/tmp/no-scheme.sock', /not a URI/],
    ['', /not a URI/],
  ])('refuses %s with invalid_argument', (address, message) => {
    expect(() => socketPathOf(address)).toThrow(message);
    try {
      socketPathOf(address);
    } catch (err) {
      expect(err).toMatchObject({ code: 'invalid_argument', retryable: false });
    }
  });

  it('falls back to SPIFFE_ENDPOINT_SOCKET and says so when neither is set', () => {
    expect(() => new WorkloadApiClient(undefined)).toThrow(/SPIFFE_ENDPOINT_SOCKET/);
  });
});
