import { readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { makeDirs, writeFileAtomic } from '../lib/fs.js';
import { derToPem } from '../spiffe/bundle/bundle.js';

/**
 * Writes `federated/<td>.pem` under `dir` for each foreign trust domain (keys: a trust domain name or
 * its `spiffe://` ID; values: its X.509 authorities, DER), each atomically, and removes the files of
 * trust domains no longer given (a foreign bundle no longer sent is dropped, as the Workload API
 * means it). Used by `cairn svid fetch|watch --write` (from the agent) and by `cairn bootstrap|renew`
 * (from the CA, for agentless devices).
 */
export function writeFederatedBundles(dir: string, bundles: Iterable<readonly [string, readonly Buffer[]]>): void {
  const federated = new Set<string>();
  for (const [td, certs] of bundles) {
    // the map's keys name files: only what a trust domain name can be (no "/", no "..")
    const name = td.replace(/^spiffe:\/\//, '');
    if (!/^[a-z0-9._-]+$/.test(name) || /^\.+$/.test(name)) continue;
    makeDirs(join(dir, 'federated'), 0o755);
    writeFileAtomic(join(dir, 'federated', `${name}.pem`), certs.map((c) => derToPem(c)).join(''), 0o644);
    federated.add(`${name}.pem`);
  }
  let held: string[] = [];
  try {
    held = readdirSync(join(dir, 'federated'));
  } catch {
    // no federated/ yet
  }
  for (const f of held) if (f.endsWith('.pem') && !federated.has(f)) rmSync(join(dir, 'federated', f), { force: true });
}
