import type { FastifyRequest } from 'fastify';
import { CairnError } from '../../lib/errors.js';
import { isLoopbackAddress } from '../../lib/net.js';

/**
 * Who may use the admin API on the plain-HTTP listener: callers on the loopback interface of the
 * CA's own host or network namespace (`loopback`, the default), or nobody (`off`). The TLS listener
 * serves the admin API to any address; the plain one exists for the public documents.
 */
export const PLAIN_ADMIN_MODES = ['loopback', 'off'] as const;
export type PlainAdminMode = (typeof PLAIN_ADMIN_MODES)[number];

export function isPlainAdminMode(value: string): value is PlainAdminMode {
  return (PLAIN_ADMIN_MODES as readonly string[]).includes(value);
}

/**
 * The refusal for an admin request on the plain listener, or undefined when it may proceed.
 * `remoteAddress` is the socket's peer as the kernel reports it: never X-Forwarded-For or any
 * other header, which the caller writes itself.
 */
export function plainAdminRefusal(mode: PlainAdminMode, remoteAddress: string | undefined, tlsUrl: string): CairnError | undefined {
  if (mode === 'loopback' && isLoopbackAddress(remoteAddress)) return undefined;
  const why = mode === 'off' ? 'this CA serves no admin routes over plain HTTP (--plain-admin off)' : 'over plain HTTP this CA serves admin routes only to loopback callers';
  return new CairnError('tls_required', `${why}: use the TLS listener${tlsUrl ? ` ${tlsUrl}` : ''} (cairn: --server https://… with --ca-pin or --ca-file)`, {
    details: tlsUrl ? { tlsUrl } : {},
  });
}

/**
 * An onRequest hook for the admin context of the plain listener. It runs before authentication,
 * so a refused request never reaches the token check or the route.
 */
export function plainAdminGate(mode: PlainAdminMode, tlsUrl: () => string): (req: FastifyRequest) => Promise<void> {
  return async (req) => {
    const refusal = plainAdminRefusal(mode, req.socket.remoteAddress, tlsUrl());
    if (refusal) {
      req.log.info({ event: 'admin.plain_refused', remoteAddress: req.socket.remoteAddress, mode }, 'admin request on the plain listener refused');
      throw refusal;
    }
  };
}
