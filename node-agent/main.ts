import { createPublicKey } from 'node:crypto';
import { join } from 'node:path';
import { systemClock, type Clock } from '../lib/clock.js';
import { describeWriteError, errnoCode } from '../lib/fs.js';
import { createLogger, type Logger } from '../lib/log.js';
import { createCsr, generateKeyAndCsr } from '../lib/pkcs10.js';
import { cairnVersion } from '../lib/version.js';
import { parseBootstrapToken } from '../contract/bootstrap-token.js';
import { SpiffeId } from '../spiffe/id.js';
import { DEFAULT_MAX_CONNECTIONS_PER_UID, startWorkloadApiServer, type WorkloadApiServer } from '../workload-api/server.js';
import { isRefusal, NodeAgent } from './agent.js';
import { attestNode, type NodeAttestation } from './attestation/node-attestors.js';
import { CaClient, chainPemOf } from './ca-client.js';
import { AccountNames } from './caller/accounts.js';
import { CallerIdentifier } from './caller/connection.js';
import { ExecutableHashCache } from './caller/unix-attestor.js';
import { K8sWorkloadAttestor, KubeletClient } from './caller/k8s-attestor.js';
import { SystemdWorkloadAttestor } from './caller/systemd-attestor.js';
import { loadPeerCredentialSource, type PeerCredentials } from './platform/peercred.js';
import { prepareSocketDir } from './storage/socket-dir.js';
import { cannotAttestMessage, clearPendingAttestationKey, dataDirProblem, loadAgentState, pendingAttestationKey, saveAgentState, type PersistedAgent } from './storage/agent-state.js';
import { startMetricsListener } from '../lib/metrics-listener.js';

export interface AgentConfig {
  readonly dataDir: string;
  /** Unix socket for the Workload API; default <data-dir>/sockets/workload.sock. */
  readonly socketPath?: string | undefined;
  /**
   * Cairn's own directory tree (default: the data dir). Directories in it on the way to the socket
   * are opened for search so workloads of other users can reach the socket (see socket-dir.ts).
   */
  readonly ownedDir?: string | undefined;
  /**
   * A join token the operator gave (the string, or a reader of its file that answers undefined once
   * the file is gone). It is looked at on every start: the token this data dir attested with is not
   * spent again (a restart reuses the persisted SVID), while a token it has not used wins over the
   * persisted SVID. With no persisted SVID it is the way to attest.
   */
  readonly joinToken?: string | (() => Promise<string | undefined>) | undefined;
  /**
   * Mints a join token when one is needed (`cairn up`, which hosts the CA itself): when no SVID is
   * persisted, when the CA refuses the persisted one at first contact, and when it stops accepting
   * the running agent.
   */
  readonly mintJoinToken?: (() => Promise<string>) | undefined;
  /** Where the CA's TLS endpoint is now, when it moved since the agent attested (else the persisted URL). */
  readonly caUrl?: string | undefined;
  /** Attest with a Kubernetes PSAT or x509pop instead of a join token (re-attestable: no token to spend). */
  readonly attestation?: NodeAttestation | undefined;
  /** The Kubernetes workload attestor (k8s:* selectors from the kubelet), next to the Unix one. */
  readonly kubelet?: { readonly url: string; readonly tokenFile?: string | undefined; readonly caFile?: string | undefined; readonly skipVerify?: boolean | undefined } | undefined;
  /** The systemd workload attestor (systemd:id, systemd:fragment_path), next to the Unix one. */
  readonly systemd?: boolean | undefined;
  /** Workload API connections holding no stream are closed after this long; 0 never. Default 30 s. */
  readonly workloadIdleTimeoutMs?: number | undefined;
  /** Open Workload API connections one uid may hold; more are refused. Default 64. */
  readonly workloadMaxConnectionsPerUid?: number | undefined;
  /** Serve Prometheus metrics on this address (a loopback one unless the operator chooses otherwise); absent: none. */
  readonly metricsListen?: { readonly host: string; readonly port: number } | undefined;
  /** Report the process_* and nodejs_* metrics too (the agent's own process). */
  readonly processMetrics?: boolean | undefined;
}

export interface AgentHandle {
  readonly spiffeId: string;
  /** This installation's version (package.json), read once at start. */
  readonly version: string;
  readonly socketPath: string;
  /** Where Prometheus scrapes this agent, when --metrics-listen was given. */
  readonly metricsUrl: string | undefined;
  readonly agent: NodeAgent;
  /** Resolves once the first sync is in and the first SVIDs are issued. */
  whenReady(timeoutMs?: number): Promise<void>;
  /**
   * Settles when the agent stops by itself: rejects with AgentRefusedError when the CA no longer
   * accepts it and it cannot attest again (the process should then exit non-zero); resolves on close().
   */
  readonly done: Promise<void>;
  close(): Promise<void>;
}

export class AgentStartError extends Error {
  override readonly name = 'AgentStartError';
}

/** A join token given to this start, with its public id; undefined when none is configured (or its file is gone). */
async function givenToken(config: AgentConfig): Promise<{ token: string; id: string } | undefined> {
  const raw = typeof config.joinToken === 'function' ? await config.joinToken() : config.joinToken;
  const token = raw?.trim();
  if (!token) return undefined;
  try {
    return { token, id: parseBootstrapToken(token).claims.id };
  } catch (err) {
    throw new AgentStartError(`the join token is not a Cairn one-time token (${(err as Error).message}); give the one \`cairn token create\` printed, cairn1.…`);
  }
}

/**
 * Whether the CA still accepts a persisted SVID, asked once at start when a way to attest anew is at
 * hand. "Away" (unreachable, 5xx) is not a refusal: the agent then starts on the persisted SVID.
 */
async function refusedAtFirstContact(state: PersistedAgent, caUrl: string | undefined): Promise<boolean> {
  const client = new CaClient({ caUrl: caUrl ?? state.caUrl, authorityPem: state.authorityPem, chainPem: state.chainPem, keyPem: state.keyPem });
  try {
    await client.sync(0, 0, 0);
    return false;
  } catch (err) {
    return isRefusal(err);
  } finally {
    client.close();
  }
}

/**
 * Which credentials the agent starts with. The rule for join tokens:
 *  - no valid persisted SVID: attest with the given token (or a minted one);
 *  - a persisted SVID and the same token it was bought with (a restart with the token file still
 *    configured): reuse the SVID, spend nothing;
 *  - a persisted SVID and a token this data dir has not used: the operator gave a new token (say,
 *    after an eviction): attest with it;
 *  - a persisted SVID from before tokens were recorded, with a token configured (or `cairn up`'s
 *    minter): reuse it unless the CA refuses it at first contact, then attest with the token.
 */
async function bootstrap(config: AgentConfig, clock: Clock, logger: Logger): Promise<{ state: PersistedAgent; unpersisted: boolean }> {
  // Probed before anything is spent: an SVID that cannot be written down is lost at the next
  // restart, and with it the one-time join token it was bought with.
  const unwritable = dataDirProblem(config.dataDir);
  const persisted = loadAgentState(config.dataDir, clock.now());
  let given: { token: string; id: string } | undefined;
  if (persisted && !config.attestation) {
    try {
      given = await givenToken(config);
    } catch (err) {
      // An unreadable token file does not stop a restart that does not need it.
      if (err instanceof AgentStartError) throw err;
      logger.warn({ event: 'agent.join_token_unreadable', reason: (err as Error).message }, 'the configured join token could not be read; starting on the persisted agent SVID');
    }
    let reuse = true;
    if (given && persisted.joinTokenId !== undefined && given.id !== persisted.joinTokenId) {
      logger.info({ event: 'agent.new_join_token', spiffeId: persisted.spiffeId, tokenId: given.id }, 'a join token this agent has not used was given: attesting with it instead of reusing the persisted agent SVID');
      reuse = false;
    } else if ((given && persisted.joinTokenId === undefined) || (!given && config.mintJoinToken)) {
      if (await refusedAtFirstContact(persisted, config.caUrl)) {
        logger.warn({ event: 'agent.persisted_svid_refused', spiffeId: persisted.spiffeId }, 'the CA refuses the persisted agent SVID; attesting again with a join token');
        reuse = false;
      }
    }
    if (reuse) {
      // The persisted SVID still serves; only its renewals cannot be kept until the disk is fixed.
      if (unwritable) logger.warn({ event: 'agent.data_dir_unwritable', dataDir: config.dataDir, code: unwritable.code, reason: unwritable.message }, 'the data dir is not writable: renewed agent SVIDs cannot be persisted until it is');
      logger.info({ spiffeId: persisted.spiffeId }, 'reusing the persisted agent SVID');
      return { state: persisted, unpersisted: false };
    }
  } else if (persisted) {
    if (unwritable) logger.warn({ event: 'agent.data_dir_unwritable', dataDir: config.dataDir, code: unwritable.code, reason: unwritable.message }, 'the data dir is not writable: renewed agent SVIDs cannot be persisted until it is');
    logger.info({ spiffeId: persisted.spiffeId }, 'reusing the persisted agent SVID');
    return { state: persisted, unpersisted: false };
  }
  if (unwritable) throw new AgentStartError(cannotAttestMessage(unwritable, config.attestation?.kind ?? 'join_token'));
  let state: PersistedAgent;
  if (config.attestation) {
    state = await attestWithEvidence(config.attestation);
  } else {
    const noWay = 'no valid agent SVID in the data dir and no way to attest: give a join token (--join-token, CAIRN_JOIN_TOKEN or --join-token-file) or --attestor k8s_psat|x509pop';
    if (!given && !config.joinToken && !config.mintJoinToken) throw new AgentStartError(noWay);
    // Read only once the attestation key is written: the token is not looked at (nor minted) before
    // the data dir has taken the one write a restart needs to fetch the same SVID again.
    state = await attestWithToken(config.dataDir, async () => {
      const token = given ?? (await givenToken(config)) ?? (config.mintJoinToken ? await givenToken({ ...config, joinToken: await config.mintJoinToken() }) : undefined);
      if (!token) throw new AgentStartError(noWay);
      return token;
    }, clock, logger);
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

/**
 * Redeems a join token with the pending attestation key (written before the token is sent, so a
 * restart after a lost answer presents the same key and gets the same SVID back).
 */
async function attestWithToken(dataDir: string, tokenToSend: () => Promise<{ token: string; id: string }>, clock: Clock, logger: Logger): Promise<PersistedAgent> {
  const privateKey = pendingAttestationKey(dataDir, () => generateKeyAndCsr('ec-p256').privateKey);
  const csr = createCsr(privateKey, createPublicKey(privateKey));
  const given = await tokenToSend();
  const { svid, caUrl, authorityPem } = await CaClient.attest(given.token, csr.toString('base64'), {
    clock,
    onRetry: (err, delayMs) => logger.warn({ event: 'agent.attest_retry', reason: err.message, retryInMs: delayMs }, 'the CA is unreachable or unavailable; retrying attestation with the same key'),
  });
  return { spiffeId: svid.spiffeId, caUrl, authorityPem, chainPem: chainPemOf(svid), keyPem: privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(), joinTokenId: given.id };
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
  const kubelet = config.kubelet ? new KubeletClient({ ...config.kubelet, clock }) : undefined;
  const callers = new CallerIdentifier({
    peers,
    names: new AccountNames(),
    hashes: new ExecutableHashCache(),
    k8s: kubelet ? new K8sWorkloadAttestor({ pods: kubelet, log: logger }) : undefined,
    systemd: config.systemd ? new SystemdWorkloadAttestor({ clock }) : undefined,
  });
  const agent = new NodeAgent({
    client,
    clock,
    logger,
    dataDir: config.dataDir,
    spiffeId: state.spiffeId,
    trustDomain: SpiffeId.parse(state.spiffeId).trustDomain,
    identify: (peer) => callers.accept(peer as PeerCredentials),
    credentialsUnpersisted: unpersisted,
    joinTokenId: state.joinTokenId,
    // With evidence it can present again (or a token it can mint), an agent the CA stops accepting
    // (evicted, or its SVID expired while the CA was away) attests again by itself; an agent given a
    // join token stops and asks for a new one.
    ...(config.attestation
      ? { reattest: () => attestWithEvidence(config.attestation!) }
      : config.mintJoinToken
        ? { reattest: async () => attestWithToken(config.dataDir, async () => (await givenToken({ joinToken: await config.mintJoinToken!(), dataDir: config.dataDir }))!, clock, logger) }
        : {}),
  });
  const socketPath = config.socketPath ?? join(config.dataDir, 'sockets', 'workload.sock');
  // Once a minute per uid (and reason): a flood from one uid is one line, and several uids cannot
  // make each other's lines repeat (a single-slot RepeatGate would log every alternation).
  const refusalLoggedAt = new Map<string, number>();
  const logRefusal = (key: string, now: number): boolean => {
    const last = refusalLoggedAt.get(key);
    if (last !== undefined && now >= last && now - last < 60_000) return false;
    if (refusalLoggedAt.size >= 1024) refusalLoggedAt.clear();
    refusalLoggedAt.set(key, now);
    return true;
  };
  // prom-client is loaded only when metrics are asked for: an agent without them does not carry it.
  const metrics = config.metricsListen ? new (await import('./metrics.js')).AgentMetrics(() => agent.gauges(), clock, { process: config.processMetrics ?? false }) : undefined;
  let server: WorkloadApiServer;
  try {
    const { opened, closed } = prepareSocketDir(socketPath, config.ownedDir ?? config.dataDir);
    if (opened.length > 0) logger.debug({ directories: opened }, 'opened the directories on the way to the Workload API socket for search');
    if (closed.length > 0) {
      logger.warn(
        { event: 'agent.socket_unreachable', socket: socketPath, directories: closed.map((d) => `${d.path} (${d.mode})`) },
        'workloads running as other users cannot reach the Workload API socket: a directory on its path is not searchable by them (give it o+x, or choose another --socket)',
      );
    }
    server = await startWorkloadApiServer({
      socketPath,
      ports: agent,
      health: () => agent.health(),
      peerOf: (socket) => peers.kernelCredentials(socket),
      releasePeer: (peer) => peers.release(peer as PeerCredentials),
      idleTimeoutMs: config.workloadIdleTimeoutMs,
      maxConnectionsPerUid: config.workloadMaxConnectionsPerUid,
      metrics,
      sds: {
        // bounded by what the agent sends: one report per response a client rejects
        onNack: (nack) => logger.warn({ event: 'sds.nack', ...nack }, 'an Envoy SDS client rejected the secrets it was sent (NACK); it keeps its previous ones until the next change'),
      },
      onRefused: (peer, reason) => {
        if (logRefusal(`${reason}:${peer?.uid}`, clock.now().getTime())) {
          logger.warn({ event: 'workload_api.connection_refused', reason, uid: peer?.uid, pid: peer?.pid, maxPerUid: config.workloadMaxConnectionsPerUid ?? DEFAULT_MAX_CONNECTIONS_PER_UID }, 'refused a Workload API connection (logged once a minute per uid)');
        }
      },
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
  let metricsListener: { readonly url: string; close(): Promise<void> } | undefined;
  if (metrics && config.metricsListen) {
    const { host, port } = config.metricsListen;
    try {
      metricsListener = await startMetricsListener(metrics, host, port, (err) => logger.warn({ err }, 'collecting metrics failed'));
    } catch (err) {
      await server.close();
      client.close();
      kubelet?.close();
      const code = errnoCode(err);
      throw new AgentStartError(`cannot listen on ${host.includes(':') ? `[${host}]` : host}:${port} (--metrics-listen): ${code === 'EADDRINUSE' ? 'the address is already in use' : (err as Error).message}`, { cause: err });
    }
  }
  const stop = new AbortController();
  const running = agent.run(stop.signal);
  running.catch(() => undefined); // observed through `done`
  const version = cairnVersion();
  logger.info({ spiffeId: state.spiffeId, socket: socketPath, version }, 'agent serving the Workload API');
  return {
    spiffeId: state.spiffeId,
    version,
    socketPath,
    metricsUrl: metricsListener?.url,
    agent,
    done: running,
    async whenReady(timeoutMs = 30_000) {
      const deadline = clock.now().getTime() + timeoutMs;
      while (!agent.ready()) {
        const refused = agent.refusal();
        if (refused) throw refused;
        if (clock.now().getTime() > deadline) throw new AgentStartError('the agent did not complete its first sync in time');
        await new Promise((r) => setTimeout(r, 50));
      }
      await agent.rotate();
    },
    async close() {
      stop.abort();
      await metricsListener?.close();
      await server.close();
      await running.catch(() => undefined);
      agent.discovery.flush();
      client.close();
      kubelet?.close();
    },
  };
}
