/** Messages between the fleet bench (parent) and its simulated-agent worker processes (IPC). */

export interface AgentTicket {
  /** Index of the agent in the fleet (0-based); its ID is AGENT_ID(index). */
  readonly index: number;
  /** A join token naming the agent ID and the CA replica (claims URL) that minted it. */
  readonly token: string;
}

export type ToWorker =
  /** Attest every ticket (at most `concurrency` at once) and start each agent's sync loop at once. */
  | { type: 'attest'; tickets: AgentTicket[]; concurrency: number }
  /** Report counts now. */
  | { type: 'status' }
  /** Drop every connection to the CA and hold the same long-polls against another server (the bare baseline). */
  | { type: 'retarget'; url: string; authorityPem: string; concurrency: number }
  | { type: 'stop' };

export interface WorkerStatus {
  readonly type: 'status';
  readonly attested: number;
  readonly attestFailures: number;
  /** Agents that hold a complete entry set. */
  readonly synced: number;
  /** Agents with a long-poll (wait > 0) outstanding right now. */
  readonly polling: number;
  /** Sync answers received so far. */
  readonly answers: number;
  readonly syncErrors: number;
  readonly lastError: string | undefined;
  readonly rssKb: number;
  readonly cpuMs: number;
}

export type FromWorker =
  | WorkerStatus
  /** An entry whose SPIFFE ID contains /probe/ reached an agent (t: epoch ms, sub-ms precision). */
  | { type: 'got'; agent: number; spiffeId: string; t: number; full: boolean }
  /** An agent finished a complete (re)sync: its parents and how many entries it holds. */
  | { type: 'full'; agent: number; parents: number; entries: number; t: number }
  | { type: 'attested-all' }
  | { type: 'retargeted' };

/** Wall-clock milliseconds with sub-millisecond precision, comparable across processes on one machine. */
export const nowMs = (): number => performance.timeOrigin + performance.now();

export const TRUST_DOMAIN = 'fleet.test';
export const agentId = (i: number): string => `spiffe://${TRUST_DOMAIN}/agent/${i}`;
export const POOL_SELECTOR = 'fleet:pool:all';
export const POOL_ALIAS = `spiffe://${TRUST_DOMAIN}/pool/all`;
export const SERVER_ID = `spiffe://${TRUST_DOMAIN}/cairn/server`;
