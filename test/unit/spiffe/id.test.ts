import { describe, expect, it } from 'vitest';
import { parseTrustDomain, SpiffeId } from '../../../spiffe/id.js';
import { SpiffeError } from '../../../spiffe/errors.js';

describe('SPIFFE ID (SPIFFE-ID.md)', () => {
  it.each([
    ['spiffe://example.org/ns/prod/sa/web', 'example.org', '/ns/prod/sa/web'],
    ['spiffe://10.1.2.3/x', '10.1.2.3', '/x'],
    ['spiffe://example.org', 'example.org', ''],
    ['spiffe://a_b-c.d/A.b-C_9', 'a_b-c.d', '/A.b-C_9'],
    ['spiffe://example.org/...x/x..', 'example.org', '/...x/x..'],
  ])('accepts %s', (text, td, path) => {
    const id = SpiffeId.parse(text);
    expect(id.trustDomain).toBe(td);
    expect(id.path).toBe(path);
    expect(id.toString()).toBe(text);
  });

  it.each([
    ['spiffe://Example.org/a', 'lowercase'],
    ['spiffe://example.org/a/', 'trailing slash'],
    ['spiffe://example.org//a', 'empty segments'],
    ['spiffe://ex.org/a%20b', 'percent-encoding'],
    ['spiffe://ex.org:443/a', 'port'],
    ['spiffe://u@ex.org/a', 'userinfo'],
    ['spiffe://ex.org/a?x=1', 'query'],
    ['spiffe://ex.org/a#f', 'fragment'],
    ['https://ex.org/a', 'scheme'],
    ['SPIFFE://ex.org/a', 'scheme'],
    ['spiffe:///a', 'trust domain is missing'],
    ['spiffe://', 'trust domain is missing'],
    ['spiffe://ex.org/./a', 'dot segments'],
    ['spiffe://ex.org/a/..', 'dot segments'],
    ['spiffe://ex.org/a b', 'path segment characters'],
    ['spiffe://ex.org/é', 'path segment characters'],
    ['spiffe://[::1]/a', 'IPv6'],
    ['', 'empty'],
    ['spiffe://ex.org/' + 'a'.repeat(2040), '2048'],
    ['spiffe://' + 'a'.repeat(256) + '/x', '255'],
  ])('rejects %j (%s)', (text, reason) => {
    let err: unknown;
    try {
      SpiffeId.parse(text);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(SpiffeError);
    expect((err as SpiffeError).code).toBe('invalid_spiffe_id');
    expect((err as Error).message).toContain(reason);
  });

  it('accepts exactly 2048 bytes and no more', () => {
    const base = 'spiffe://ex.org/';
    expect(SpiffeId.parse(base + 'a'.repeat(2048 - base.length)).toString()).toHaveLength(2048);
    expect(() => SpiffeId.parse(base + 'a'.repeat(2049 - base.length))).toThrow(/2048/);
  });

  it('parses trust domain names and their ID form', () => {
    expect(parseTrustDomain('example.org')).toBe('example.org');
    expect(parseTrustDomain('spiffe://example.org')).toBe('example.org');
    expect(() => parseTrustDomain('spiffe://example.org/x')).toThrow(/path/);
    expect(() => parseTrustDomain('Example.org')).toThrow(SpiffeError);
    expect(() => parseTrustDomain('')).toThrow(/missing/);
  });

  it('knows path prefixes on segment boundaries', () => {
    const id = SpiffeId.parse('spiffe://td/cairn/agent/x');
    expect(id.hasPathPrefix('/cairn')).toBe(true);
    expect(SpiffeId.parse('spiffe://td/cairnx').hasPathPrefix('/cairn')).toBe(false);
    expect(id.trustDomainId).toBe('spiffe://td');
  });
});
