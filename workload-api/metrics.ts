import { Code, ConnectError, type Interceptor } from '@connectrpc/connect';

/** One Workload API call as metrics see it. */
export interface WorkloadCallObserver {
  /** The first response message is out (for a stream: the caller holds its first answer). */
  firstMessage(): void;
  /** The call ended with this gRPC code's name (`OK`, `PermissionDenied`, …). */
  ended(code: string): void;
}

export interface WorkloadApiMetrics {
  callStarted(method: string, streaming: boolean): WorkloadCallObserver;
}

/** A status's name as the metrics count it (`OK`, `PermissionDenied`, …). */
export const codeName = (err: unknown): string => {
  const code = ConnectError.from(err).code;
  return Code[code] ?? String(code);
};

/**
 * Observes every call: its code when it ends, its latency to the first message, and for server
 * and bidirectional (SDS) streams the time it stays open. A stream the caller abandons ends as `Canceled`.
 */
export function metricsInterceptor(metrics: WorkloadApiMetrics): Interceptor {
  return (next) => async (req) => {
    const call = metrics.callStarted(req.method.name, req.method.methodKind === 'server_streaming' || req.method.methodKind === 'bidi_streaming');
    let res;
    try {
      res = await next(req);
    } catch (err) {
      call.ended(codeName(err));
      throw err;
    }
    if (!res.stream) {
      call.firstMessage();
      call.ended('OK');
      return res;
    }
    const messages = res.message;
    async function* observed() {
      let first = true;
      let ended = false;
      try {
        for await (const m of messages) {
          if (first) call.firstMessage();
          first = false;
          yield m;
        }
        ended = true;
        call.ended('OK');
      } catch (err) {
        ended = true;
        call.ended(codeName(err));
        throw err;
      } finally {
        if (!ended) call.ended('Canceled');
      }
    }
    return { ...res, message: observed() };
  };
}
