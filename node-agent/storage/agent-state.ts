import { existsSync, readFileSync, rmSync } from 'node:fs';
import { createPrivateKey, type KeyObject, X509Certificate } from 'node:crypto';
import { join } from 'node:path';
import { describeWriteError, errnoCode, probeWritable, writeFileAtomic } from '../../lib/fs.js';

/** What an agent keeps on disk to restart without a new token: its own SVID and where the CA is. */
export interface PersistedAgent {
  readonly spiffeId: string;
  readonly caUrl: string;
  readonly authorityPem: string;
  readonly chainPem: string;
  readonly keyPem: string;
  /**
   * The id (from its public claims, not the secret) of the join token this data dir attested with:
   * a restart with that same token configured reuses the SVID; a token with another id is a new one
   * the operator gave, and wins.
   */
  readonly joinTokenId?: string | undefined;
}

const FILE = 'agent-svid.json';

/** Atomic: on a full or read-only disk it throws (err.code ENOSPC, EROFS…) and the previous file stays as it was. */
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

export interface DataDirProblem {
  /** The errno name (EACCES, EROFS, ENOSPC…) when the file system gave one. */
  readonly code: string | undefined;
  /** A sentence naming the directory and what is wrong with it. */
  readonly message: string;
}

/** Why `dataDir` cannot take the agent's state right now (creating it if needed); undefined when it can. */
export function dataDirProblem(dataDir: string): DataDirProblem | undefined {
  try {
    probeWritable(dataDir);
    return undefined;
  } catch (err) {
    return describeDataDirProblem(dataDir, err);
  }
}

export function describeDataDirProblem(dataDir: string, err: unknown): DataDirProblem {
  return { code: errnoCode(err), message: `the agent's data dir ${dataDir} is not writable: ${describeWriteError(err)}` };
}

/**
 * Why the agent refuses to attest: an SVID it could not write down would be lost at the next
 * restart, and with it the one-time join token it was bought with.
 */
export function cannotAttestMessage(problem: DataDirProblem, attestor: 'join_token' | 'k8s_psat' | 'x509pop'): string {
  const spent = attestor === 'join_token' ? 'the join token was not used' : 'nothing was attested';
  return `${problem.message}. The agent keeps its SVID there to restart without a new token, so it stopped before attesting (${spent}); make the directory writable (or choose another with --data-dir) and start the agent again`;
}

const PENDING_KEY = 'attestation-key.pem';

/**
 * The key of a join-token attestation in flight, written before the token is sent and kept until the
 * SVID is saved. An agent that dies after the CA committed its redemption but before it heard the
 * answer presents the same key again when restarted, and the CA answers with the same SVID (a new
 * key would find the token spent). A fresh key is made when none is pending.
 */
export function pendingAttestationKey(dataDir: string, generate: () => KeyObject): KeyObject {
  const path = join(dataDir, PENDING_KEY);
  if (existsSync(path)) {
    try {
      return createPrivateKey(readFileSync(path, 'utf8'));
    } catch {
      // unreadable or torn (it is written atomically, so only by hand): start over with a new key
    }
  }
  const key = generate();
  writeFileAtomic(path, key.export({ format: 'pem', type: 'pkcs8' }).toString(), 0o600);
  return key;
}

/** The attestation completed and its SVID is saved: the pending key has served its purpose. */
export function clearPendingAttestationKey(dataDir: string): void {
  rmSync(join(dataDir, PENDING_KEY), { force: true });
}
