import type { Clock } from '../../lib/clock.js';
import { writeFileAtomic } from '../../lib/fs.js';
import type { Logger } from '../../lib/log.js';
import type { AuditLog } from './service.js';
import type { StoredCheckpoint } from './store.js';
import { sleepUnlessAborted } from '../../lib/sleep.js';

export interface CheckpointExport {
  /** Each new checkpoint replaces this file's content (atomically): `cairn audit verify --checkpoint-file` reads it. */
  readonly file?: string | undefined;
  /** Each new checkpoint is POSTed here as text/plain. From the CA's configuration only, never the admin API. */
  readonly webhook?: string | undefined;
  readonly webhookTimeoutMs?: number | undefined;
}

export interface CheckpointerOptions {
  /** How often committed entries are numbered into the tree. */
  readonly integrateEveryMs: number;
  /** A checkpoint is signed when the tree has grown and the latest is at least this old. */
  readonly checkpointEveryMs: number;
  readonly export: CheckpointExport;
}

/**
 * The log's background work on every replica: integrate about once a second, sign a checkpoint
 * while the log grows (the audit_log row lock makes replicas take turns; the first to sign a size
 * stores it), and export each checkpoint this replica made.
 */
export class Checkpointer {
  constructor(private readonly log: AuditLog, private readonly clock: Clock, private readonly logger: Logger, private readonly options: CheckpointerOptions) {}

  async run(signal: AbortSignal): Promise<void> {
    let lastWarned = 0;
    while (!signal.aborted) {
      try {
        await this.pass();
      } catch (err) {
        const now = this.clock.now().getTime();
        if (now - lastWarned > 60_000) {
          lastWarned = now;
          this.logger.warn({ err, event: 'audit.integrate_failed' }, 'audit log integration failed; will retry');
        }
      }
      await sleepUnlessAborted(this.options.integrateEveryMs, signal);
    }
  }

  /** One round: integrate, and sign when due. */
  async pass(): Promise<void> {
    const { size } = await this.log.integrate();
    const latest = await this.log.latest();
    const age = this.clock.now().getTime() - latest.createdAt.getTime();
    if (size > latest.size && age >= this.options.checkpointEveryMs) await this.signNow();
  }

  /** Integrate everything committed and sign now (POST /v1/audit/checkpoint). */
  async signNow(): Promise<StoredCheckpoint> {
    await this.log.integrate();
    const { checkpoint, created } = await this.log.checkpoint();
    if (created) await this.export(checkpoint);
    return checkpoint;
  }

  private async export(c: StoredCheckpoint): Promise<void> {
    const { file, webhook, webhookTimeoutMs } = this.options.export;
    if (file) {
      try {
        writeFileAtomic(file, c.note, 0o644);
      } catch (err) {
        this.logger.warn({ err, file, size: c.size }, 'could not write the audit checkpoint file');
      }
    }
    if (webhook) {
      try {
        const res = await fetch(webhook, { method: 'POST', headers: { 'content-type': 'text/plain; charset=utf-8' }, body: c.note, redirect: 'error', signal: AbortSignal.timeout(webhookTimeoutMs ?? 5000) });
        await res.body?.cancel();
        if (!res.ok) this.logger.warn({ status: res.status, size: c.size }, 'the audit checkpoint webhook refused a checkpoint');
      } catch (err) {
        this.logger.warn({ err: { message: (err as Error).message }, size: c.size }, 'could not post the audit checkpoint to the webhook');
      }
    }
    this.logger.info({ event: 'audit.checkpoint', size: c.size, root: c.root.toString('base64') }, 'audit checkpoint signed');
  }
}
