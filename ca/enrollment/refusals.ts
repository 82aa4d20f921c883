import type { Clock } from '../../lib/clock.js';
import type { CairnError } from '../../lib/errors.js';
import type { Logger } from '../../lib/log.js';
import type { JsonValue } from '../../lib/canonical-json.js';
import type { AuditAppender } from '../audit/port.js';
import { FailureLimiter } from './failure-limiter.js';

/**
 * `node.refused` entries for nodes that proved who they are and were turned away anyway (banned,
 * evicted, a revoked or superseded SVID, a ban met at enrollment). Such a node keeps asking — an
 * agent syncs every few seconds — so each node gets a few entries a minute and the rest stay log
 * lines: the log shows that it was refused and why, and no node can grow it without bound.
 */
export class NodeRefusals {
  private readonly limiter: FailureLimiter;

  constructor(
    private readonly audit: AuditAppender,
    private readonly logger: Logger,
    clock: Clock,
    perMinute = 5,
  ) {
    this.limiter = new FailureLimiter(clock, perMinute, 60);
  }

  /** Records the refusal (its real reason) and returns the error to throw; never fails on the log's account. */
  async refused(err: CairnError, actor: string, subject: { readonly [k: string]: JsonValue | undefined }): Promise<CairnError> {
    try {
      this.limiter.check(actor);
    } catch {
      this.logger.debug({ event: 'node.refused', actor, reason: err.code, limited: true }, 'node refused');
      return err;
    }
    this.limiter.fail(actor);
    this.logger.info({ event: 'node.refused', actor, reason: err.code, ...subject }, 'node refused');
    await this.audit.record([{ event: 'node.refused', actor, subject: { ...subject, reason: err.code, message: err.message } }])
      .catch((e: unknown) => this.logger.error({ err: e }, 'could not append a refused node to the audit log'));
    return err;
  }
}
