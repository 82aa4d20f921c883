import type { AuthorityKey } from './store.js';

/**
 * When automatic rotation acts, as pure functions of a key's validity and the trust domain's
 * pre-publication window P (SPIRE's schedule, plus a floor on how long a successor is published):
 *
 * - activation of the successor at one sixth of the active key's life left;
 * - preparation (generate and publish) at half life, or P before the activation point if that is earlier;
 * - a successor activates only once it has been published for P, unless the active key is about to
 *   expire: a trust domain is never left without a valid signing key to honour the window.
 *
 * P is at most half the CA TTL (the trust domain refuses more), so for keys made under the current
 * settings the preparation point always falls after the key's own start: a 1 h CA with the default
 * 30 min window prepares at 20 min and activates at 50 min (SPIRE's schedule alone publishes only
 * 20 minutes ahead). Keys made under older settings that leave less room are prepared at once and
 * activated when published for P or at their last minute, whichever comes first.
 */

/** The active key's last moments: past this the successor activates however long it was published. */
export const LAST_RESORT_MS = 60_000;

const lifetimeMs = (k: Pick<AuthorityKey, 'notBefore' | 'notAfter'>): number => k.notAfter.getTime() - k.notBefore.getTime();

export function activationPoint(active: Pick<AuthorityKey, 'notBefore' | 'notAfter'>): Date {
  return new Date(active.notAfter.getTime() - lifetimeMs(active) / 6);
}

export function preparationPoint(active: Pick<AuthorityKey, 'notBefore' | 'notAfter'>, prepublishSeconds: number): Date {
  const halfLife = active.notBefore.getTime() + lifetimeMs(active) / 2;
  return new Date(Math.min(halfLife, activationPoint(active).getTime() - prepublishSeconds * 1000));
}

export type ActivationDecision = 'wait' | 'activate' | 'activate_early';

/**
 * Whether the prepared successor takes over now. `activate_early` means the window could not be
 * honoured (the active key is expiring or gone): it is logged as a warning.
 */
export function activationDue(active: AuthorityKey | undefined, prepared: AuthorityKey, prepublishSeconds: number, now: Date): ActivationDecision {
  const t = now.getTime();
  const publishedEnough = t - prepared.createdAt.getTime() >= prepublishSeconds * 1000;
  if (!active || active.notAfter.getTime() - t <= LAST_RESORT_MS) return publishedEnough ? 'activate' : 'activate_early';
  return t >= activationPoint(active).getTime() && publishedEnough ? 'activate' : 'wait';
}
