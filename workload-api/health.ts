import { create } from '@bufbuild/protobuf';
import { Code, ConnectError, type ConnectRouter } from '@connectrpc/connect';
import { Health, HealthCheckResponse_ServingStatus, HealthCheckResponseSchema } from './gen/grpc/health/v1/health_pb.js';
import type { HealthState } from './ports.js';

/**
 * The standard gRPC health service (grpc.health.v1.Health) beside the Workload API on its socket, so
 * Kubernetes probes, grpc_health_probe and `cairn agent healthcheck` can ask whether the agent
 * serves. It reveals nothing but that, so it needs neither the Workload API's security header nor a
 * caller identity. Check answers for the whole server ("") and for "SpiffeWorkloadAPI"; Watch is
 * left unimplemented (answers Unimplemented), which the protocol allows.
 */
export const HEALTH_SERVICES: readonly string[] = ['', 'SpiffeWorkloadAPI'];

/** Response header carrying why the agent is NOT_SERVING, for humans (the protocol has no field for it). */
export const HEALTH_REASON_HEADER = 'cairn-health-reason';

export function healthRoutes(health: () => HealthState): (router: ConnectRouter) => void {
  return (router) => {
    router.service(Health, {
      check(req, ctx) {
        if (!HEALTH_SERVICES.includes(req.service)) throw new ConnectError(`unknown service "${req.service}"`, Code.NotFound);
        const state = health();
        if (!state.serving && state.reason) ctx.responseHeader.set(HEALTH_REASON_HEADER, state.reason.replace(/[^\x20-\x7e]/g, '?'));
        return create(HealthCheckResponseSchema, { status: state.serving ? HealthCheckResponse_ServingStatus.SERVING : HealthCheckResponse_ServingStatus.NOT_SERVING });
      },
    });
  };
}
