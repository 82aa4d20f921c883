/**
 * One host pattern of `--federation-endpoints` (ca/federation/endpoint-allow.ts): `host`,
 * `host:port`, `*.domain`, `*.domain:port`, an IP literal (`[v6]` with a port), or `*`. Here so the
 * CLI can check the setting without loading the CA; an Error names a bad one (an `error:` line).
 */
export function parsePattern(text: string): { host: string; suffix: boolean; port: number | undefined } {
  const t = text.trim().toLowerCase();
  if (t === '*') return { host: '*', suffix: false, port: undefined };
  const m = /^(?:\[([0-9a-f:.]+)\]|(\*\.)?([a-z0-9.-]+))(?::(\d{1,5}))?$/.exec(t);
  const port = m?.[4] === undefined ? undefined : Number(m[4]);
  if (!m || (port !== undefined && (port < 1 || port > 65535)) || (m[3] !== undefined && (m[3].startsWith('.') || m[3].endsWith('.') || m[3].includes('..')))) {
    throw new Error(`"${text}" is not an endpoint pattern: host, host:port, *.domain, [v6]:port or *`);
  }
  return { host: m[1] ?? m[3]!, suffix: m[2] !== undefined, port };
}
