import type { FastifyBaseLogger, FastifyInstance, RawReplyDefaultExpression, RawRequestDefaultExpression, RawServerDefault } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';

/** A fastify instance whose route schemas type the handlers (TypeBox provider). */
export type App = FastifyInstance<RawServerDefault, RawRequestDefaultExpression, RawReplyDefaultExpression, FastifyBaseLogger, TypeBoxTypeProvider>;

declare module 'fastify' {
  interface FastifyRequest {
    /** Who is calling, for events: "admin:<token name>", "agent:<spiffe id>", or "public". */
    actor: string;
    /** The attested node behind an mTLS request (agent and device contexts only). */
    node: import('../nodes/store.js').AttestedNode;
  }
  interface FastifyContextConfig {
    /** Which access context registered the route; the route-enumeration test reads it. */
    access?: 'admin' | 'agent' | 'public' | 'bootstrap';
  }
}
