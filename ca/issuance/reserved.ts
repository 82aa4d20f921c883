import { CairnError } from '../../lib/errors.js';
import type { SpiffeId } from '../../spiffe/id.js';

/** Cairn's own namespace: agent and server identities live under /cairn and nobody may claim them. */
export const RESERVED_PATH = '/cairn';

export function isReserved(id: SpiffeId): boolean {
  return id.hasPathPrefix(RESERVED_PATH);
}

export function refuseReserved(id: SpiffeId): void {
  if (isReserved(id)) {
    throw new CairnError('reserved_spiffe_id', `SPIFFE IDs under ${RESERVED_PATH}/ are reserved for Cairn's own agents and servers`);
  }
}
