import type { RevokedList, RevokeResponse } from '../../contract/revocation-api.js';
import { UsageError, type Parsed } from '../flags.js';
import type { SVID_REVOKE_FLAGS, SVID_REVOKED_FLAGS } from '../specs/svid.js';
import { adminClientFor } from '../client.js';
import { printResult, say, table } from '../output.js';

/** `cairn svid revoke --serial S | --spiffe-id ID [--trust-domain TD] [--reason R]`. */
export async function svidRevoke({ values, command }: Parsed<typeof SVID_REVOKE_FLAGS>): Promise<void> {
  const serial = values.serial;
  const spiffeId = values['spiffe-id'];
  if ((serial === undefined) === (spiffeId === undefined)) {
    throw new UsageError('svid revoke needs --serial HEX (one SVID) or --spiffe-id ID (every current SVID of that ID), not both', command);
  }
  const res = await adminClientFor(values).request<RevokeResponse>('POST', '/v1/x509-svids/revoke', {
    ...(serial !== undefined ? { serial } : { spiffeId }),
    ...(values['trust-domain'] ? { trustDomain: values['trust-domain'] } : {}),
    ...(values.reason ? { reason: values.reason } : {}),
  });
  if (!values.json) say(`revoked ${res.svids.length} X.509-SVID${res.svids.length === 1 ? '' : 's'} of ${res.trustDomain}; its CRL (/td/${res.trustDomain}/crl.pem) lists them until they expire`);
  printResult(values.json, res, () => res.svids.map((s) => `${s.serial} ${s.spiffeId} ${s.notAfter}`).join('\n'));
}

export async function svidRevoked({ values }: Parsed<typeof SVID_REVOKED_FLAGS>): Promise<void> {
  const qs = new URLSearchParams({ trustDomain: values['trust-domain'] });
  const res = await adminClientFor(values).request<RevokedList>('GET', `/v1/x509-svids/revoked?${qs}`);
  printResult(values.json, res, () =>
    table([['SERIAL', 'SPIFFE ID', 'EXPIRES', 'REVOKED', 'BY', 'REASON'], ...res.svids.map((s) => [s.serial, s.spiffeId, s.notAfter, s.revokedAt, s.revokedBy, s.reason ?? '-'])]),
  );
}
