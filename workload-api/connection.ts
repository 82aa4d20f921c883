import { Code, ConnectError, createContextKey, type HandlerContext } from '@connectrpc/connect';
import { CallerChangedError, type ConnectionAttestation, type Workload, type WorkloadApiPorts } from './ports.js';

/**
 * The connection's caller, attested at accept from the kernel's peer credentials, put into each
 * call's context by the server. Every service on the socket (the Workload API, Envoy SDS) learns
 * who calls through this one path and nothing the caller sends.
 */
export const kCaller = createContextKey<ConnectionAttestation | undefined>(undefined);

export function attestationError(err: unknown): ConnectError {
  if (err instanceof ConnectError) return err;
  if (err instanceof CallerChangedError) return new ConnectError(err.message, Code.PermissionDenied);
  return new ConnectError('workload attestation failed', Code.Unavailable, undefined, undefined, err);
}

/** The calling workload: Unavailable before the first sync, PermissionDenied without an attested caller. */
export async function workloadOf(ports: WorkloadApiPorts, caller: ConnectionAttestation | undefined): Promise<Workload> {
  if (!ports.ready()) throw new ConnectError('agent is not ready yet', Code.Unavailable);
  if (!caller) throw new ConnectError('caller could not be identified', Code.PermissionDenied);
  try {
    return await caller.workload();
  } catch (err) {
    throw attestationError(err);
  }
}

/** workloadOf for a connect-node call: the caller comes from the call's context. */
export function callerWorkload(ports: WorkloadApiPorts, ctx: HandlerContext): Promise<Workload> {
  return workloadOf(ports, ctx.values.get(kCaller));
}
