import { createPublicKey } from 'node:crypto';
import { join } from 'node:path';
import { systemClock, type Clock } from '../lib/clock.js';
import { describeWriteError, errnoCode } from '../lib/fs.js';
import { createLogger, type Logger } from '../lib/log.js';
import { createCsr, generateKeyAndCsr } from '../lib/pkcs10.js';
import { SpiffeId } from '../spiffe/id.js';
import { startWorkloadApiServer, type WorkloadApiServer } from '../workload-api/server.js';
import { NodeAgent } from './agent.js';
import { attestNode, type NodeAttestation } from './attestation/node-attestors.js';
import { CaClient, chainPemOf } from './ca-client.js';
import { ExecutableHashCache, unixSelectors } from './caller/unix-attestor.js';
import { K8sWorkloadAttestor, KubeletClient } from './caller/k8s-attestor.js';
import { loadPeerCredentialSource, type PeerCredentials } from './platform/peercred.js';
import { cannotAttestMessage, clearPendingAttestationKey, dataDirProblem, loadAgentState, pendingAttestationKey, saveAgentState, type PersistedAgent } from './storage/agent-state.js';

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

async function bootstrap(config: AgentConfig, clock: Clock, logger: Logger): Promise<{ state: PersistedAgent; unpersisted: boolean }> {
  // Probed before anything is spent: an SVID that cannot be written down is lost at the next
  // restart, and with it the one-time join token it was bought with.
  const unwritable = dataDirProblem(config.dataDir);
  const persisted = loadAgentState(config.dataDir, clock.now());
  if (persisted) {
    // The persisted SVID still serves; only its renewals cannot be kept until the disk is fixed.
    if (unwritable) logger.warn({ event: 'agent.data_dir_unwritable', dataDir: config.dataDir, code: unwritable.code, reason: unwritable.message }, 'the data dir is not writable: renewed agent SVIDs cannot be persisted until it is');
    logger.info({ spiffeId: persisted.spiffeId }, 'reusing the persisted agent SVID');
    return { state: persisted, unpersisted: false };
  }
  if (unwritable) throw new AgentStartError(cannotAttestMessage(unwritable, config.attestation?.kind ?? 'join_token'));
  if (!config.joinToken && !config.attestation) throw new AgentStartError('no valid agent SVID in the data dir and no way to attest: give a join token (--join-token, CAIRN_JOIN_TOKEN or --join-token-file) or --attestor k8s_psat|x509pop');
  let state: PersistedAgent;
  if (config.attestation) {
    state = await attestWithEvidence(config.attestation);
  } else {
    const privateKey = pendingAttestationKey(config.dataDir, () => generateKeyAndCsr('ec-p256').privateKey);
    const csr = createCsr(privateKey, createPublicKey(privateKey));
    const token = typeof config.joinToken === 'string' ? config.joinToken : await config.joinToken!();
    const { svid, caUrl, authorityPem } = await CaClient.attest(token.trim(), csr.toString('base64'), {
      clock,
      onRetry: (err, delayMs) => logger.warn({ event: 'agent.attest_retry', reason: err.message, retryInMs: delayMs }, 'the CA is unreachable or unavailable; retrying attestation with the same key'),
    });
    state = { spiffeId: svid.spiffeId, caUrl, authorityPem, chainPem: chainPemOf(svid), keyPem: privateKey.export({ format: 'pem', type: 'pkcs8' }).toString() };
  }
  logger.info({ spiffeId: state.spiffeId, attestor: config.attestation?.kind ?? 'join_token' }, 'agent attested');
  try {
    saveAgentState(config.dataDir, state);
  } catch (err) {
    // The disk failed since the probe and the token is spent: dying now would throw away the SVID it
    // bought. Serve with it and let the agent retry the write every second.
    logger.error({ event: 'agent_svid.persist_failed', dataDir: config.dataDir, code: errnoCode(err), reason: describeWriteError(err) }, 'could not write the new agent SVID to the data dir: serving with it, retrying the write; a restart before it succeeds can fetch it again with the same token only while the token is unexpired');
    return { state, unpersisted: true };
  }
  clearPendingAttestationKey(config.dataDir);
  return { state, unpersisted: false };
}

/** A fresh key and SVID from the node's own evidence (PSAT, device certificate): repeatable, unlike a join token. */
async function attestWithEvidence(attestation: NodeAttestation): Promise<PersistedAgent> {
  const key = generateKeyAndCsr('ec-p256');
  const { svid, caUrl, authorityPem } = await attestNode(attestation, key.csr.toString('base64'));
  return { spiffeId: svid.spiffeId, caUrl, authorityPem, chainPem: chainPemOf(svid), keyPem: key.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString() };
}

/** The node agent process: bootstrap, serve the Workload API, sync and rotate until closed. */
export async function startAgent(config: AgentConfig, runtime: { clock?: Clock; logger?: Logger } = {}): Promise<AgentHandle> {
  const clock = runtime.clock ?? systemClock;
  const logger = runtime.logger ?? createLogger();
  const { state, unpersisted } = await bootstrap(config, clock, logger);
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
    credentialsUnpersisted: unpersisted,
    // With evidence it can present again, an agent the CA stops accepting (evicted, or its SVID
    // expired while the CA was away) attests again by itself; a join-token agent needs a new token.
    ...(config.attestation ? { reattest: () => attestWithEvidence(config.attestation!) } : {}),
  });
  const socketPath = config.socketPath ?? join(config.dataDir, 'sockets', 'workload.sock');
  let server: WorkloadApiServer;
  try {
    server = await startWorkloadApiServer({
      socketPath,
      ports: agent,
      peerOf: (socket) => peers.fromSocket(socket),
      releasePeer: (peer) => peers.release(peer as PeerCredentials),
    });
  } catch (err) {
    client.close();
    kubelet?.close();
    // Typically the default socket under a data dir gone read-only or full: say so, and whether a
    // restart after the fix needs a new token.
    if (errnoCode(err) === undefined) throw err;
    const next = unpersisted ? 'the agent SVID could not be persisted either, so a restart needs a new join token' : 'the agent SVID is persisted: fix this and start the agent again, no new token needed';
    throw new AgentStartError(`cannot create the Workload API socket ${socketPath}: ${describeWriteError(err)}; ${next}`, { cause: err });
  }
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
