import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { resolve } from 'node:path';
import { fetchPinnedAuthority, PinMismatchError, requestJson, type JsonResponse } from '../lib/tls-client.js';
import { isLoopbackHost } from '../lib/net.js';
import { UsageError } from './flags.js';
import { resolveAdminTarget, type AdminTarget, type AdminTargetFlags } from './admin-target.js';

/** Where the CLI finds things: flags, then CAIRN_* environment, then the local defaults. */
export function dataDirOf(flag: string | undefined): string {
  return resolve(flag ?? process.env.CAIRN_DATA_DIR ?? '.cairn');
}

export const DEFAULT_HTTP_PORT = 8080;
export const DEFAULT_TLS_PORT = 8443;

/** What `cairn up` recorded in <data-dir>/endpoints.json; empty when absent or unreadable. */
export function recordedEndpoints(dataDir: string): { caUrl?: string; caTlsUrl?: string; caPin?: string; socket?: string } {
  const file = join(dataDir, 'endpoints.json');
  if (!existsSync(file)) return {};
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as { caUrl?: string; caTlsUrl?: string; caPin?: string; socket?: string };
  } catch {
    return {};
  }
}

export function adminTokenOf(dataDir: string): string {
  const fromEnv = process.env.CAIRN_ADMIN_TOKEN;
  if (fromEnv) return fromEnv.trim();
  if (process.env.CAIRN_ADMIN_TOKEN_FILE) return readInputFile(process.env.CAIRN_ADMIN_TOKEN_FILE, 'CAIRN_ADMIN_TOKEN_FILE').trim();
  const file = join(dataDir, 'admin-token');
  if (existsSync(file)) return readFileSync(file, 'utf8').trim();
  throw new CliError('unauthenticated', `no admin token: set CAIRN_ADMIN_TOKEN (or CAIRN_ADMIN_TOKEN_FILE) or run where ${file} exists`);
}

export class CliError extends Error {
  override readonly name = 'CliError';
  constructor(
    readonly code: string,
    message: string,
    readonly status?: number,
    /** The API error's machine-readable details (e.g. entry_exists's existingId). */
    readonly details?: Readonly<Record<string, unknown>>,
  ) {
    super(message);
  }
}

/** An input file named on the command line; an unreadable one is a usage error, not a crash. */
export function readInputFile(path: string, what: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw new UsageError(`cannot read ${what} ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

export interface AdminClient {
  request<T>(method: string, path: string, body?: unknown): Promise<T>;
}

/**
 * How admin verbs authenticate: the admin token (a bearer secret), or an admin SVID as the TLS client
 * certificate (an SVID of a registration entry marked admin), loaded when the first request is made.
 */
export type AdminCredential =
  | { readonly kind: 'token'; readonly token: string }
  | { readonly kind: 'svid'; readonly source: string; readonly load: () => Promise<{ cert: string; key: string }> };

export interface AdminCredentialFlags {
  readonly 'svid-dir'?: string | undefined;
  readonly 'svid-from-socket'?: boolean | undefined;
  readonly 'data-dir'?: string | undefined;
}

/** --svid-dir DIR (svid.pem and svid.key, as `cairn svid fetch --write` leaves them), --svid-from-socket, else the admin token. */
export function adminCredentialOf(values: AdminCredentialFlags, dataDir: string): AdminCredential {
  if (values['svid-dir'] !== undefined && values['svid-from-socket']) throw new UsageError('--svid-dir and --svid-from-socket are alternatives: give one');
  const dir = values['svid-dir'];
  if (dir !== undefined) {
    return {
      kind: 'svid',
      source: `--svid-dir ${dir}`,
      load: async () => ({ cert: readInputFile(join(dir, 'svid.pem'), 'the SVID (--svid-dir)'), key: readInputFile(join(dir, 'svid.key'), 'the SVID key (--svid-dir)') }),
    };
  }
  if (values['svid-from-socket']) {
    return {
      kind: 'svid',
      source: '--svid-from-socket',
      load: async () => {
        // loaded only here: the Workload API client is not every admin verb's cost
        const [{ WorkloadApiClient, x509Pem }, { workloadSocketOf }] = await Promise.all([import('../workload-api/client.js'), import('./commands/workload.js')]);
        // admin verbs have no --socket (nor a table entry applying SPIFFE_ENDPOINT_SOCKET): read it here
        const client = new WorkloadApiClient(workloadSocketOf(process.env.SPIFFE_ENDPOINT_SOCKET || undefined, values['data-dir']));
        try {
          const svid = (await client.fetchX509Context(AbortSignal.timeout(30_000))).svids[0];
          if (!svid) throw new CliError('unauthenticated', 'the Workload API gave this process no X.509-SVID');
          const pem = x509Pem(svid);
          return { cert: pem.certificates, key: pem.privateKey };
        } finally {
          client.close();
        }
      },
    };
  }
  return { kind: 'token', token: adminTokenOf(dataDir) };
}

/** The admin client for the common flags: the server and its trust (see admin-target.ts), and the admin token or SVID. */
export function adminClientFor(values: AdminTargetFlags & AdminCredentialFlags): AdminClient {
  const dataDir = dataDirOf(values['data-dir']);
  return adminClient(resolveAdminTarget(values, dataDir, recordedEndpoints(dataDir)), adminCredentialOf(values, dataDir));
}

/** TLS verification failures Node reports by code: the server is not who the trust settings say. */
const UNTRUSTED = /^(SELF_SIGNED_CERT_IN_CHAIN|DEPTH_ZERO_SELF_SIGNED_CERT|UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT(_LOCALLY)?|CERT_(HAS_EXPIRED|NOT_YET_VALID|SIGNATURE_FAILURE|UNTRUSTED|REJECTED)|ERR_TLS_CERT_ALTNAME_INVALID|CERT_CHAIN_TOO_LONG|INVALID_CA)$/;

function transportError(err: unknown, target: AdminTarget): CliError {
  const e = err as NodeJS.ErrnoException & { cause?: NodeJS.ErrnoException };
  const code = e.code ?? e.cause?.code ?? '';
  const detail = e.cause?.message ?? e.message;
  if (err instanceof PinMismatchError && target.trust?.kind === 'pin') {
    return new CliError('tls_pin_mismatch', `the CA at ${target.server} does not present the pinned key ${target.trust.pin} (from ${target.trust.source}); the admin token was not sent`);
  }
  if (UNTRUSTED.test(code)) {
    const how = target.trust?.kind === 'file'
      ? `${target.trust.source} ${target.trust.file} does not verify it`
      : 'no pin or CA file was given, and the system\'s roots do not verify it: pass --ca-pin PIN (`cairn ca pin`; the CA prints it at start) or --ca-file FILE';
    return new CliError('tls_untrusted', `cannot trust the CA at ${target.server} (${detail}): ${how}; the admin token was not sent`);
  }
  return new CliError('unreachable', `cannot reach the CA at ${target.server}: ${detail.replace(/^cannot reach the CA at \S+: /, '')}`);
}

function answer<T>(status: number, payload: unknown): T {
  if (status === 204) return undefined as T;
  if (status < 200 || status >= 300) {
    const e = (payload ?? {}) as { code?: string; message?: string; details?: Record<string, unknown> };
    throw new CliError(e.code ?? `http_${status}`, e.message ?? `the CA answered ${status}`, status, e.details);
  }
  return payload as T;
}

/**
 * Requests with the admin token or an admin SVID. Over https the server is verified first (the pin on
 * a connection that carries nothing, then the pinned authority as the only root; or the CA file; or
 * the system's roots with a host-name check) and the token goes only inside that TLS session; an SVID
 * is the TLS client certificate, and then no token is sent. Plain HTTP (token only) is allowed to
 * loopback addresses only; anything else is refused before a connection is made.
 */
export function adminClient(t: AdminTarget, cred: AdminCredential): AdminClient {
  const url = new URL(t.server);
  if (url.protocol === 'https:') return tlsAdminClient(t, cred);
  if (cred.kind === 'svid') {
    throw new UsageError(`${cred.source}: an SVID authenticates only over TLS, but ${t.serverSource} is ${t.server}; use the CA's TLS listener (--server https://HOST:8443 with --ca-pin or --ca-file)`);
  }
  const token = cred.token;
  if (!isLoopbackHost(url.hostname)) {
    throw new CliError('tls_required', `refusing to send the admin token in cleartext to ${t.server} (${t.serverSource}): plain HTTP is for loopback only; use the CA's TLS listener, e.g. --server https://${url.hostname}:8443 with --ca-pin PIN (\`cairn ca pin\`) or --ca-file FILE`);
  }
  return {
    async request<T>(method: string, path: string, body?: unknown): Promise<T> {
      let res: Response;
      try {
        res = await fetch(t.server + path, {
          method,
          headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
          ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        });
      } catch (err) {
        throw transportError(err, t);
      }
      const text = await res.text();
      let payload: unknown;
      try {
        payload = text ? JSON.parse(text) : undefined;
      } catch {
        // a text/plain answer (the audit log's signed checkpoint) is handed back as the text
        payload = (res.headers.get('content-type') ?? '').startsWith('text/plain') ? text : undefined;
      }
      return answer<T>(res.status, payload);
    },
  };
}

function tlsAdminClient(target: AdminTarget, credential: AdminCredential): AdminClient {
  const trust = target.trust;
  // the pinned authority (or the CA file) is resolved once per process, before any token is sent
  let anchor: Promise<string | undefined> | undefined;
  const anchorOf = (): Promise<string | undefined> =>
    (anchor ??= trust === undefined
      ? Promise.resolve(undefined)
      : trust.kind === 'file'
        ? Promise.resolve(readInputFile(trust.file, `the CA file (${trust.source})`))
        : fetchPinnedAuthority(target.server, trust.pin));
  let client: Promise<{ cert: string; key: string }> | undefined;
  const clientCertificate = (): Promise<{ cert: string; key: string }> | undefined => (credential.kind === 'svid' ? (client ??= credential.load()) : undefined);
  return {
    async request<T>(method: string, path: string, body?: unknown): Promise<T> {
      let res: JsonResponse<unknown>;
      // the SVID first: a failure there is the caller's to fix, not the CA's
      const mtls = await clientCertificate();
      try {
        const ca = await anchorOf();
        // with an SVID no bearer token is sent: the certificate is the credential
        res = await requestJson<unknown>(method, target.server + path, body, { ca, ...(mtls ?? { bearer: credential.kind === 'token' ? credential.token : undefined }), checkServerName: trust === undefined });
      } catch (err) {
        if (err instanceof UsageError) throw err;
        throw transportError(err, target);
      }
      return answer<T>(res.status, res.body);
    },
  };
}
