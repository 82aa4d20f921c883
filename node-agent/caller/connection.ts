import { CallerChangedError } from '../../workload-api/ports.js';
import type { PeerCredentialSource, PeerCredentials } from '../platform/peercred.js';
import type { AccountNames } from './accounts.js';
import type { K8sWorkloadAttestor } from './k8s-attestor.js';
import { parsePodFromCgroup } from './k8s-attestor.js';
import type { SystemdWorkloadAttestor } from './systemd-attestor.js';
import { unitFromCgroup } from './systemd-attestor.js';
import { processFacts, stillRunsExe, unixSelectors, type ExecutableHashCache } from './unix-attestor.js';

/**
 * One accepted Workload API connection's caller. Everything that identifies it is read when the
 * connection is accepted — uid/gid (SO_PEERCRED, from connect time), supplementary groups, the
 * executable (path, file identity, hash), the cgroup that names its systemd unit and Kubernetes
 * pod — and every call on the connection reuses that attestation after a cheap check that the
 * process is still the one attested: still alive (pidfd, else start time) and still running the
 * same executable (a stat and a readlink of /proc/<pid>/exe, no rehash).
 *
 * Why: a process can connect, hand the connection to a child, and exec a trusted binary. Reading
 * /proc at call time (as before) then attested the trusted binary for the attacker's child.
 */
export interface CallerConnection {
  /** The caller's selectors, resolved once (lookups that failed, like an unreachable kubelet, are retried on the next call). */
  selectors(): Promise<string[]>;
  /** Throws CallerChangedError when the process exited or exec'd since accept. */
  recheck(): void;
  release(): void;
}

export interface CallerIdentifierDeps {
  readonly peers: PeerCredentialSource;
  readonly names: AccountNames;
  readonly hashes: ExecutableHashCache;
  readonly k8s?: K8sWorkloadAttestor | undefined;
  readonly systemd?: SystemdWorkloadAttestor | undefined;
  readonly procRoot?: string;
}

export class CallerIdentifier {
  private readonly procRoot: string;

  constructor(private readonly deps: CallerIdentifierDeps) {
    this.procRoot = deps.procRoot ?? '/proc';
  }

  /** Reads the caller's facts now (call it from the accept handler, before anything else runs). */
  accept(peer: PeerCredentials): CallerConnection {
    const { deps, procRoot } = this;
    const pinned = deps.peers.pin(peer);
    const facts = processFacts(pinned.pid, deps.hashes, { procRoot });
    // Read after the facts: if the pid died and was reused meanwhile, the facts may be another
    // process's, and this says so.
    const aliveAtAccept = deps.peers.stillSame(pinned);
    const unit = deps.systemd && facts.cgroup !== undefined ? unitFromCgroup(facts.cgroup) : undefined;
    const pod = deps.k8s && facts.cgroup !== undefined ? parsePodFromCgroup(facts.cgroup) : undefined;
    let resolved: Promise<string[]> | undefined;
    const resolve = async (): Promise<string[]> => {
      const [unix, systemd, k8s] = await Promise.all([
        unixSelectors(pinned, facts, deps.names),
        deps.systemd ? deps.systemd.selectors(unit) : [],
        deps.k8s && pod ? deps.k8s.selectorsFor(pod, pinned.pid) : [],
      ]);
      return [...unix, ...systemd, ...k8s];
    };
    let released = false;
    return {
      selectors() {
        if (!aliveAtAccept) return Promise.reject(new CallerChangedError('the calling process exited before it could be attested'));
        if (!resolved) {
          const attempt = resolve();
          resolved = attempt;
          attempt.catch(() => {
            if (resolved === attempt) resolved = undefined;
          });
        }
        return resolved;
      },
      recheck() {
        if (!deps.peers.stillSame(pinned)) throw new CallerChangedError('the process that opened this connection has exited');
        if (!stillRunsExe(procRoot, pinned.pid, facts.exe)) throw new CallerChangedError('the process that opened this connection runs another executable than when it connected (exec)');
      },
      release() {
        if (released) return;
        released = true;
        deps.peers.release(pinned);
      },
    };
  }
}
