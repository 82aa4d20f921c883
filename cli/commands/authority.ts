import { setTimeout as sleep } from 'node:timers/promises';
import type { ActivateAuthorityResponse, AuthorityList, AuthorityView, PreparedAuthority } from '../../contract/authority-api.js';
import { writeFileAtomic } from '../../lib/fs.js';
import { humanDuration, parseDuration } from '../../lib/duration.js';
import { UsageError, type Parsed } from '../flags.js';
import type {
  AUTHORITY_ACTIVATE_FLAGS, AUTHORITY_IMPORT_FLAGS, AUTHORITY_LIST_FLAGS, AUTHORITY_PREPARE_FLAGS, AUTHORITY_REVOKE_FLAGS, AUTHORITY_TAINT_FLAGS,
} from '../specs/authority.js';
import { adminClientFor, CliError, readInputFile, type AdminClient } from '../client.js';
import { printResult, say, table } from '../output.js';

/** Envoy caches a JWKS 10 minutes and istiod refreshes every 20: a key published for less may be unknown to them. */
const CONSUMER_CACHE_SECONDS = 1800;

const base = (td: string): string => `/v1/trust-domains/${encodeURIComponent(td)}/authorities`;

export async function authorityList({ values }: Parsed<typeof AUTHORITY_LIST_FLAGS>): Promise<void> {
  const res = await adminClientFor(values).request<AuthorityList>('GET', `${base(values['trust-domain'])}${values.kind ? `?kind=${values.kind}` : ''}`);
  const up = res.upstream;
  const upstreamLines = !up
    ? ''
    : `upstream: ${up.mode}, root ${up.roots.map((r) => r.subject).join('; ')}, chain valid until ${up.notAfter}` +
      (up.mode === 'offline' && up.successorDueAt ? `\nsigned successor ${up.successorDue ? 'DUE since' : 'due at'} ${up.successorDueAt}${up.successorDue ? ': cairn authority prepare --kind x509 --csr-out FILE, sign it, cairn authority import' : ''}` : '') +
      '\n\n';
  printResult(values.json, res, () =>
    upstreamLines +
    table([
      ['KIND', 'ID', 'STATUS', 'KEY TYPE', 'NOT BEFORE', 'NOT AFTER', 'UNEXPIRED SVIDS', 'FINGERPRINT'],
      ...res.authorities.map((a) => [
        a.kind,
        a.id,
        a.awaitingCertificate ? `${a.status} (awaiting certificate)` : a.status,
        a.keyType,
        a.notBefore,
        a.notAfter,
        // JWT-SVIDs are not inventoried one by one: how long its tokens may live instead of a count.
        a.unexpiredSvids === null ? (a.lastSvidExpiresAt ? `- (valid until ${a.lastSvidExpiresAt})` : '-') : String(a.unexpiredSvids),
        a.publicKeyFingerprint,
      ]),
    ]),
  );
}

export async function authorityPrepare({ values, command }: Parsed<typeof AUTHORITY_PREPARE_FLAGS>): Promise<void> {
  const td = values['trust-domain'];
  const csrOut = values['csr-out'];
  if (csrOut !== undefined) {
    if (values.kind !== 'x509') throw new UsageError('--csr-out needs --kind x509: only the X.509 CA is signed by an upstream', command);
    const a = await adminClientFor(values).request<PreparedAuthority>('POST', `${base(td)}/prepare`, { kind: 'x509', csr: true });
    writeFileAtomic(csrOut, a.csr!, 0o644);
    say(`wrote a CSR for x509 authority ${a.id} (${a.keyType}, ${a.publicKeyFingerprint}) to ${csrOut}: have the upstream CA sign it as a CA certificate, keeping its extensions`);
    say(`then: cairn authority import --trust-domain ${td} --cert SIGNED.pem --chain UPSTREAM-CHAIN.pem`);
    const { csr: _csr, ...view } = a;
    printResult(values.json, view, () => a.id);
    return;
  }
  const a = await adminClientFor(values).request<AuthorityView>('POST', `${base(td)}/prepare`, { kind: values.kind });
  say(`prepared ${a.kind} authority ${a.id} (${a.keyType}, ${a.publicKeyFingerprint}): published in the bundle now, signing nothing until activated`);
  say(`activate it with: cairn authority activate --trust-domain ${td} --kind ${a.kind} (add --min-published 30m to wait for verifiers that cache the bundle)`);
  printResult(values.json, a, () => a.id);
}

export async function authorityImport({ values }: Parsed<typeof AUTHORITY_IMPORT_FLAGS>): Promise<void> {
  const td = values['trust-domain'];
  const body = {
    kind: 'x509',
    certificate: readInputFile(values.cert, 'the signed CA certificate (--cert)'),
    ...(values.chain !== undefined ? { chain: readInputFile(values.chain, 'the upstream chain (--chain)') } : {}),
  };
  const a = await adminClientFor(values).request<AuthorityView>('POST', `${base(td)}/import`, body);
  say(`imported the certificate of x509 authority ${a.id} (valid until ${a.notAfter}): published in the bundle, with the upstream root`);
  say(`it signs once activated: rotation does so on its schedule, or now: cairn authority activate --trust-domain ${td} --kind x509`);
  printResult(values.json, a, () => a.id);
}

export async function authorityActivate({ values }: Parsed<typeof AUTHORITY_ACTIVATE_FLAGS>): Promise<void> {
  const client = adminClientFor(values);
  const minPublishedSeconds = values['min-published'] === undefined ? undefined : parseDuration(values['min-published']);
  const body = { kind: values.kind, ...(values.id ? { id: values.id } : {}), ...(minPublishedSeconds !== undefined ? { minPublishedSeconds } : {}) };
  const r = await activateWhenPublished(client, `${base(values['trust-domain'])}/activate`, body);
  say(`${r.activated.kind} authority ${r.activated.id} is active; it had been published for ${humanDuration(r.publishedSeconds)}`);
  if (r.previous) say(`${r.previous.kind} authority ${r.previous.id} is now old (published until ${r.previous.notAfter}); taint it if it was compromised`);
  if (r.publishedSeconds < CONSUMER_CACHE_SECONDS) {
    say(`note: published for less than ${humanDuration(CONSUMER_CACHE_SECONDS)}: verifiers that cache the bundle or JWKS (Envoy 10 min, istiod 20 min) may not trust the new key yet`);
  }
  printResult(values.json, r, () => r.activated.id);
}

/**
 * The CA refuses (authority_too_new, with retryAfterSeconds) while the prepared key has been published
 * for less than --min-published; we wait that long and ask again, so the flag makes the command wait.
 */
async function activateWhenPublished(client: AdminClient, path: string, body: Record<string, unknown>): Promise<ActivateAuthorityResponse> {
  for (;;) {
    try {
      return await client.request<ActivateAuthorityResponse>('POST', path, body);
    } catch (err) {
      const retry = err instanceof CliError && err.code === 'authority_too_new' ? Number(err.details?.retryAfterSeconds) : NaN;
      if (!Number.isFinite(retry) || retry < 0) throw err;
      say(`waiting ${humanDuration(retry)}: ${err instanceof Error ? err.message : ''}`);
      await sleep(retry * 1000 + 500);
    }
  }
}

export async function authorityTaint({ values }: Parsed<typeof AUTHORITY_TAINT_FLAGS>): Promise<void> {
  const td = values['trust-domain'];
  const a = await adminClientFor(values).request<AuthorityView>('POST', `${base(td)}/${encodeURIComponent(values.id)}/taint`, { kind: values.kind });
  say(`${a.kind} authority ${a.id} is tainted: agents re-issue every SVID it signed now and stop accepting its JWT-SVIDs; devices get a new SVID at their next renewal`);
  say(`once what it signed is replaced, remove it from the bundle: cairn authority revoke --trust-domain ${td} --kind ${a.kind} --id ${a.id}`);
  printResult(values.json, a, () => a.id);
}

export async function authorityRevoke({ values }: Parsed<typeof AUTHORITY_REVOKE_FLAGS>): Promise<void> {
  const td = values['trust-domain'];
  const a = await adminClientFor(values)
    .request<AuthorityView>('POST', `${base(td)}/${encodeURIComponent(values.id)}/revoke`, { kind: values.kind, ...(values.force ? { force: true } : {}) })
    .catch((err: unknown) => {
      // The API's "pass force" is this command's --force.
      if (err instanceof CliError && err.code === 'authority_in_use') throw new CliError(err.code, err.message.replace('pass force', 'pass --force'), err.status, err.details);
      throw err;
    });
  say(`${a.kind} authority ${a.id} is revoked: it has left the bundle and will never sign or be published again`);
  printResult(values.json, a, () => a.id);
}
