import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { systemClock, type Clock } from '../lib/clock.js';
import { createLogger, type Logger } from '../lib/log.js';
import { generateKeyAndCsr } from '../lib/pkcs10.js';
import { SpiffeId } from '../spiffe/id.js';
import { startWorkloadApiServer, type WorkloadApiServer } from '../workload-api/server.js';
import { NodeAgent } from './agent.js';
import { attestNode, type NodeAttestation } from './attestation/node-attestors.js';
import { CaClient, chainPemOf } from './ca-client.js';
import { ExecutableHashCache, unixSelectors } from './caller/unix-attestor.js';
import { K8sWorkloadAttestor, KubeletClient } from './caller/k8s-attestor.js';
import { loadPeerCredentialSource, type PeerCredentials } from './platform/peercred.js';
import { loadAgentState, saveAgentState, type PersistedAgent } from './storage/agent-state.js';

export interface AgentConfig {
  readonly dataDir: string;
  /** Unix socket for the Workload API; default <data-dir>/sockets/workload.sock. */
  readonly socketPath?: string | undefined;
  /** A join token (or a way to get one); needed only when no valid agent SVID is persisted in the data dir. */
  readonly joinToken?: string | (() => Promise<string>) | undefined;
  /** Where the CA's TLS endpoint is now, when it moved since the agent attested (else the persisted URL). */
  readonly caUrl?: string | undefined;
  /** Attest with a Kubernetes PSAT or x509pop instead of a join token (re-attestable: no token to spend). */
  readonly attestation?: NodeAttestation | undefined;
  /** The Kubernetes workload attestor (k8s:* selectors from the kubelet), next to the Unix one. */
  readonly kubelet?: { readonly url: string; readonly tokenFile?: string | undefined; readonly caFile?: string | undefined; readonly skipVerify?: boolean | undefined } | undefined;
}

export interface AgentHandle {
  readonly spiffeId: string;
  readonly socketPath: string;
  readonly agent: NodeAgent;
  /** Resolves once the first sync is in and the first SVIDs are issued. */
  whenReady(timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

export class AgentStartError extends Error {
  override readonly name = 'AgentStartError';
}

async function bootstrap(config: AgentConfig, clock: Clock, logger: Logger): Promise<PersistedAgent> {
  const persisted = loadAgentState(config.dataDir, clock.now());
  if (persisted) {
    logger.info({ spiffeId: persisted.spiffeId }, 'reusing the persisted agent SVID');
    return persisted;
  }
  if (!config.joinToken && !config.attestation) throw new AgentStartError('no valid agent SVID in the data dir and no way to attest: give a join token (--join-token, CAIRN_JOIN_TOKEN or --join-token-file) or --attestor k8s_psat|x509pop');
  const key = generateKeyAndCsr('ec-p256');
  let attested;
  if (config.attestation) {
    attested = await attestNode(config.attestation, key.csr.toString('base64'));
  } else {
    const token = typeof config.joinToken === 'string' ? config.joinToken : await config.joinToken!();
    attested = await CaClient.attest(token.trim(), key.csr.toString('base64'));
  }
  const { svid, caUrl, authorityPem } = attested;
  const state: PersistedAgent = {
    spiffeId: svid.spiffeId,
    caUrl,
    authorityPem,
    chainPem: chainPemOf(svid),
    keyPem: key.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
  };
  saveAgentState(config.dataDir, state);
  logger.info({ spiffeId: state.spiffeId, attestor: config.attestation?.kind ?? 'join_token' }, 'agent attested');
  return state;
}

/** The node agent process: bootstrap, serve the Workload API, sync and rotate until closed. */
export async function startAgent(config: AgentConfig, runtime: { clock?: Clock; logger?: Logger } = {}): Promise<AgentHandle> {
  const clock = runtime.clock ?? systemClock;
  const logger = runtime.logger ?? createLogger();
  mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
  const state = await bootstrap(config, clock, logger);
  const client = new CaClient({ caUrl: config.caUrl ?? state.caUrl, authorityPem: state.authorityPem, chainPem: state.chainPem, keyPem: state.keyPem });
  const peers = loadPeerCredentialSource();
  const hashes = new ExecutableHashCache();
  const kubelet = config.kubelet ? new KubeletClient({ ...config.kubelet, clock }) : undefined;
  const k8s = kubelet ? new K8sWorkloadAttestor({ pods: kubelet, log: logger }) : undefined;
  const selectorsOf = async (peer: PeerCredentials): Promise<string[]> => {
    const [unix, pod] = await Promise.all([unixSelectors(peer, {}, hashes), k8s ? k8s.selectors(peer) : Promise.resolve([])]);
    return [...unix, ...pod];
  };
  const agent = new NodeAgent({
    client,
    clock,
    logger,
    dataDir: config.dataDir,
    spiffeId: state.spiffeId,
    trustDomain: SpiffeId.parse(state.spiffeId).trustDomain,
    selectorsOf: (peer) => selectorsOf(peer as PeerCredentials),
    stillSame: (peer) => peers.stillSame(peer as PeerCredentials),
  });
  const socketPath = config.socketPath ?? join(config.dataDir, 'sockets', 'workload.sock');
  const server: WorkloadApiServer = await startWorkloadApiServer({
    socketPath,
    ports: agent,
    peerOf: (socket) => peers.fromSocket(socket),
    releasePeer: (peer) => peers.release(peer as PeerCredentials),
  });
  const stop = new AbortController();
  const running = agent.run(stop.signal);
  logger.info({ spiffeId: state.spiffeId, socket: socketPath }, 'agent serving the Workload API');
  return {
    spiffeId: state.spiffeId,
    socketPath,
    agent,
    async whenReady(timeoutMs = 30_000) {
      const deadline = clock.now().getTime() + timeoutMs;
      while (!agent.ready()) {
        if (clock.now().getTime() > deadline) throw new AgentStartError('the agent did not complete its first sync in time');
        await new Promise((r) => setTimeout(r, 50));
      }
      await agent.rotate();
    },
    async close() {
      stop.abort();
      await server.close();
      await running.catch(() => undefined);
      client.close();
      kubelet?.close();
    },
  };
}
