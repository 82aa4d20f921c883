import type { Server as HttpsServer } from 'node:https';
import type { FastifyServerOptions } from 'fastify';

/**
 * How long a client may take and how many may connect: without these, Node's defaults let 300
 * stalled request bodies be held for minutes (fastify sets no request timeout; Node checks its
 * header timeout only every 30 s; a TLS handshake may idle for 120 s).
 */
export interface ListenerLimits {
  /** The whole request (headers and body) must arrive within this; also bounds a TLS handshake. */
  readonly requestTimeoutMs: number;
  /** An idle kept-alive connection is closed after this. */
  readonly keepAliveTimeoutMs: number;
  /** Connections per listener; more are closed as they arrive (0: no cap). */
  readonly maxConnections: number;
}

export const DEFAULT_LISTENER_LIMITS: ListenerLimits = {
  // With the check every 5 s, a stalled request is closed within 35 s (the bound is 60 s).
  requestTimeoutMs: 30_000,
  // Above the 60 s idle timeout of common load balancers, so the balancer closes first (fastify's default).
  keepAliveTimeoutMs: 72_000,
  // A descriptor each; agents hold one long-poll each, so size it to the fleet one replica serves.
  maxConnections: 10_000,
};

/** A TLS handshake gets at most this long (and never longer than a whole request). */
const MAX_HANDSHAKE_MS = 10_000;

/**
 * TLS 1.2 suites: ECDHE with an AEAD cipher only (AES-GCM, ChaCha20-Poly1305), which is Mozilla's
 * "intermediate" list without the DHE suites. Node's default list also offers CBC with SHA-1,
 * CCM8 and ARIA. TLS 1.3 suites are all AEAD; they are listed so 1.3 stays on with its defaults.
 */
export const TLS_CIPHERS = [
  'TLS_AES_128_GCM_SHA256',
  'TLS_AES_256_GCM_SHA384',
  'TLS_CHACHA20_POLY1305_SHA256',
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
].join(':');

export function checkListenerLimits(limits: ListenerLimits): ListenerLimits {
  const { requestTimeoutMs, keepAliveTimeoutMs, maxConnections } = limits;
  if (!Number.isInteger(requestTimeoutMs) || requestTimeoutMs < 1000) throw new TypeError('requestTimeoutMs must be a whole number ≥ 1000');
  if (!Number.isInteger(keepAliveTimeoutMs) || keepAliveTimeoutMs < 1000) throw new TypeError('keepAliveTimeoutMs must be a whole number ≥ 1000');
  if (!Number.isInteger(maxConnections) || maxConnections < 0) throw new TypeError('maxConnections must be a whole number ≥ 0');
  return limits;
}

/** Node's server options for these limits (the http part of them; fastify passes it through). */
export function nodeServerOptions(limits: ListenerLimits) {
  return {
    headersTimeout: limits.requestTimeoutMs,
    requestTimeout: limits.requestTimeoutMs,
    // Node enforces both timeouts from a periodic check (30 s by default): check often enough that
    // the bound holds, rarely enough to cost nothing.
    connectionsCheckingInterval: Math.min(5_000, Math.max(250, Math.floor(limits.requestTimeoutMs / 4))),
    keepAliveTimeout: limits.keepAliveTimeoutMs,
  };
}

/**
 * The secure context: credentials and the protocol policy. Also what a certificate renewal must
 * pass to setSecureContext, which otherwise falls back to Node's default cipher list.
 */
export function secureContextOptions(credentials: { key: string; cert: string }) {
  return { key: credentials.key, cert: credentials.cert, minVersion: 'TLSv1.2' as const, ciphers: TLS_CIPHERS, honorCipherOrder: true };
}

/** Swaps the TLS listener's certificate (renewal) without losing the protocol policy. */
export function replaceTlsCredentials(server: unknown, credentials: { key: string; cert: string }): void {
  (server as HttpsServer).setSecureContext(secureContextOptions(credentials));
}

/** The TLS listener's options: the secure context, the timeouts, and a handshake deadline. */
export function tlsServerOptions(limits: ListenerLimits, credentials: { key: string; cert: string }) {
  return {
    ...nodeServerOptions(limits),
    ...secureContextOptions(credentials),
    handshakeTimeout: Math.min(MAX_HANDSHAKE_MS, limits.requestTimeoutMs),
  };
}

/** The fastify options that carry the same limits (fastify sets them on the server it creates). */
export function fastifyTimeouts(limits: ListenerLimits): Pick<FastifyServerOptions, 'requestTimeout' | 'keepAliveTimeout'> {
  return { requestTimeout: limits.requestTimeoutMs, keepAliveTimeout: limits.keepAliveTimeoutMs };
}
