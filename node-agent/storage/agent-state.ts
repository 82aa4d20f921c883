import { existsSync, readFileSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import { join } from 'node:path';
import { writeFileAtomic } from '../../lib/fs.js';

/** What an agent keeps on disk to restart without a new token: its own SVID and where the CA is. */
export interface PersistedAgent {
  readonly spiffeId: string;
  readonly caUrl: string;
  readonly authorityPem: string;
  readonly chainPem: string;
  readonly keyPem: string;
}

const FILE = 'agent-svid.json';

export function saveAgentState(dataDir: string, state: PersistedAgent): void {
  writeFileAtomic(join(dataDir, FILE), JSON.stringify(state, null, 2) + '\n', 0o600);
}

/** The persisted state while its SVID is still valid at `now`; undefined otherwise. */
export function loadAgentState(dataDir: string, now: Date): PersistedAgent | undefined {
  const path = join(dataDir, FILE);
  if (!existsSync(path)) return undefined;
  try {
    const state = JSON.parse(readFileSync(path, 'utf8')) as PersistedAgent;
    const leaf = new X509Certificate(state.chainPem);
    return new Date(leaf.validTo).getTime() > now.getTime() + 5000 ? state : undefined;
  } catch {
    return undefined;
  }
}
