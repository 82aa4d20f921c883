import { connect as connectSocket } from 'node:net';
import { createClient } from '@connectrpc/connect';
import { createGrpcTransport, Http2SessionManager } from '@connectrpc/connect-node';
import { socketPathOf, toWorkloadApiError } from './address.js';
import { Health, HealthCheckResponse_ServingStatus } from './gen/grpc/health/v1/health_pb.js';

export type ServingStatus = 'SERVING' | 'NOT_SERVING' | 'UNKNOWN' | 'SERVICE_UNKNOWN';

/**
 * grpc.health.v1.Health/Check on a Workload API socket (Cairn's agent serves it there). Sends no
 * security header and needs no identity. `reason` is Cairn's explanation of NOT_SERVING, when given.
 * Throws WorkloadApiError when the socket does not answer (code `unavailable`) or the call fails.
 */
export async function checkHealth(address: string, options: { service?: string; timeoutMs?: number; signal?: AbortSignal } = {}): Promise<{ status: ServingStatus; reason?: string }> {
  const socketPath = address.startsWith('/') ? address : socketPathOf(address);
  const sessions = new Http2SessionManager('http://localhost', {}, { createConnection: () => connectSocket(socketPath) });
  try {
    const client = createClient(Health, createGrpcTransport({ baseUrl: 'http://localhost', sessionManager: sessions }));
    let reason: string | undefined;
    const res = await client.check(
      { service: options.service ?? '' },
      { timeoutMs: options.timeoutMs ?? 5000, ...(options.signal ? { signal: options.signal } : {}), onHeader: (h) => (reason = h.get('cairn-health-reason') ?? undefined) },
    );
    const status = (HealthCheckResponse_ServingStatus[res.status] ?? 'UNKNOWN') as ServingStatus;
    return reason === undefined ? { status } : { status, reason };
  } catch (err) {
    throw toWorkloadApiError(err, socketPath);
  } finally {
    sessions.abort();
  }
}
