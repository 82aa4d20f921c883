import { BlockList, isIP } from 'node:net';

/**
 * True for an address of the loopback interface: 127.0.0.0/8, ::1, and their IPv4-mapped IPv6
 * forms (::ffff:127.0.0.1 is how a dual-stack listener sees an IPv4 loopback caller). Meant for a
 * socket's remote address as the kernel reports it, never for a header a client wrote. Anything
 * that is not an IP literal (a host name, an empty or missing address) is not loopback.
 */
export function isLoopbackAddress(address: string | undefined): boolean {
  if (!address) return false;
  const bare = address.replace(/^\[(.*)\]$/, '$1').replace(/%.*$/, '');
  const family = isIP(bare);
  if (family === 0) return false;
  const loopback = new BlockList();
  loopback.addSubnet('127.0.0.0', 8, 'ipv4');
  loopback.addAddress('::1', 'ipv6');
  // BlockList matches IPv4-mapped IPv6 addresses against IPv4 rules.
  return loopback.check(bare, family === 6 ? 'ipv6' : 'ipv4');
}

/** A URL host the admin CLI may talk plain HTTP to: a loopback literal or `localhost`. */
export function isLoopbackHost(hostname: string): boolean {
  const host = hostname.toLowerCase().replace(/\.$/, '');
  return host === 'localhost' || isLoopbackAddress(host);
}
