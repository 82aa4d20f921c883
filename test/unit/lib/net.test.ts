import { describe, expect, it } from 'vitest';
import { isLoopbackAddress, isLoopbackHost } from '../../../lib/net.js';

describe('isLoopbackAddress (a socket peer, as the kernel reports it)', () => {
  it.each([
    '127.0.0.1', '127.255.255.254', '127.0.0.53', '::1', '0:0:0:0:0:0:0:1',
    // how a dual-stack ([::]) listener sees IPv4 loopback callers, in every spelling
    '::ffff:127.0.0.1', '::FFFF:127.1.2.3', '::ffff:7f00:1', '0:0:0:0:0:ffff:127.0.0.1', '[::1]',
  ])('%s is loopback', (a) => {
    expect(isLoopbackAddress(a)).toBe(true);
  });

  it.each([
    '10.0.0.1', '192.0.2.2', '128.0.0.1', '126.255.255.255', '0.0.0.0', '::', '::2', 'fd00::2', 'fe80::1', 'fe80::1%lo',
    '::ffff:10.0.0.1', '::ffff:198.51.100.7', '::127.0.0.1', '64:ff9b::7f00:1', '2001:db8::7',
    'localhost', '127.0.0.1.nip.io', '', 'garbage', undefined,
  ])('%s is not', (a) => {
    expect(isLoopbackAddress(a)).toBe(false);
  });
});

describe('isLoopbackHost (a URL host the CLI may send the admin token to over plain HTTP)', () => {
  it('accepts loopback literals and localhost, nothing else', () => {
    for (const h of ['127.0.0.1', '[::1]', 'localhost', 'LOCALHOST', 'localhost.']) expect(isLoopbackHost(h), h).toBe(true);
    for (const h of ['ca1', '192.0.2.1', '[2001:db8::1]', 'localhost.example.com', '127.0.0.1.example.com']) expect(isLoopbackHost(h), h).toBe(false);
  });
});
