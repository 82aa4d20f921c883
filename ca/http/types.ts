import type { FastifyBaseLogger, FastifyInstance, RawReplyDefaultExpression, RawRequestDefaultExpression, RawServerDefault } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';

/** A fastify instance whose route schemas type the handlers (TypeBox provider). */
export type App = FastifyInstance<RawServerDefault, RawRequestDefaultExpression, RawReplyDefaultExpression, FastifyBaseLogger, TypeBoxTypeProvider>;

declare module 'fastify' {
  interface FastifyRequest {
    /**
     * Who is calling, for events: an admin credential's name or an admin SVID's SPIFFE ID (admin
     * context), the node's SPIFFE ID (agent and device contexts), "bootstrap:<address>", or "public".
     */
    actor: string;
    /** The admin context's state of this request: principal, access rule, scope, change note (ca/admin-auth/access.ts). */
    adminState?: import('../admin-auth/access.js').AdminRequestState;
    /** The error code this request was answered with, for metrics (set by the error handler). */
    errorCode?: string;
    /** The attested node behind an mTLS request (agent and device contexts only). */
    node: import('../nodes/store.js').AttestedNode;
  }
  interface FastifyContextConfig {
    /** Which access context registered the route; the route-enumeration test reads it. */
    access?: 'admin' | 'agent' | 'public' | 'bootstrap';
  }
}
