import { LogController, type FastifyReply, type FastifyRequest } from 'fastify';

/**
 * Fastify logs two lines per request at info ("incoming request", "request completed"); on a CA
 * whose agents long-poll and renew, they were three quarters of the log and buried the events that
 * matter (issuance, attestation, admin changes). Here they are debug lines (`--log-level debug`
 * brings them back). What a request did wrong is logged once, by the error handler (errors.ts), at
 * the level its status deserves.
 */
export class RequestLogController extends LogController {
  override incomingRequest(request: FastifyRequest): void {
    if (!this.isLogDisabled(request)) request.log.debug({ req: request }, 'incoming request');
  }

  override requestCompleted(error: Error | null | undefined, request: FastifyRequest, reply: FastifyReply): void {
    if (this.isLogDisabled(request)) return;
    // A failure while writing the answer (the socket broke, a stream failed) is the server's problem.
    if (error) reply.log.error({ res: reply, err: error, responseTime: reply.elapsedTime }, 'request errored');
    else reply.log.debug({ res: reply, responseTime: reply.elapsedTime }, 'request completed');
  }
}
