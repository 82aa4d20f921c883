import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { CairnError, type ErrorCode } from '../../lib/errors.js';
import { packageRoot } from '../../lib/paths.js';
import { issueItem, type BatchItem, type BatchJob, type BatchOutcome } from './batch-worker.js';
import type { IssuerTemplate } from './leaf-template.js';

export type { BatchItem } from './batch-worker.js';
export type BatchResult = { readonly ok: true; readonly cert: Buffer } | { readonly ok: false; readonly error: CairnError };

/**
 * Runs batch issuance on worker threads. Per certificate, checking the CSR's proof of possession
 * (OpenSSL 3 key import + ECDSA verify, ~180 µs) and signing (~45 µs with the template) dwarf
 * everything else; on the event loop they would cap a batch at one core and stall every other
 * request meanwhile. The CA key travels to the workers as a KeyObject (same process, never
 * serialised). Small batches stay on the calling thread, where a hand-off costs more than it saves.
 *
 * Workers start with the first batch that needs them and stop after a quiet spell: each is a V8
 * isolate of its own (~10 MB resident), which a CA that signs a handful of SVIDs an hour (`cairn up`
 * on a laptop, a small fleet) would otherwise carry for its whole life.
 */
export class IssuancePool {
  private readonly workers: Worker[] = [];
  private readonly pending = new Map<number, { worker: Worker; resolve: (r: BatchOutcome[]) => void; reject: (e: Error) => void }>();
  private nextId = 1;
  private turn = 0;
  private readonly file: URL | undefined = workerFile();
  private idleTimer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(
    private readonly maxWorkers: number = Math.max(1, availableParallelism()),
    private readonly minBatchForWorkers = 16,
    /** Workers are stopped after this long without a job, and started again by the next batch. */
    private readonly idleMs = 60_000,
  ) {}

  /** Tops the pool up to its size; false when there is no compiled worker (a source checkout before `npm run build`). */
  private ensureWorkers(): boolean {
    if (!this.file || this.closed) return false;
    while (this.workers.length < this.maxWorkers) this.spawn(this.file);
    return true;
  }

  private armIdleTimer(): void {
    clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => {
      if (this.pending.size > 0) return this.armIdleTimer();
      void this.stopWorkers();
    }, this.idleMs);
    this.idleTimer.unref();
  }

  private async stopWorkers(): Promise<void> {
    const stopping = this.workers.splice(0);
    await Promise.all(stopping.map((w) => w.terminate()));
  }

  private spawn(file: URL): void {
    const worker = new Worker(file);
    worker.unref();
    worker.on('message', (msg: { id: number; results: BatchOutcome[] }) => {
      const job = this.pending.get(msg.id);
      this.pending.delete(msg.id);
      job?.resolve(msg.results);
    });
    // A dead worker must not strand requests: fail its jobs (the caller redoes them in-thread)
    // and drop it from the pool.
    const retire = (reason: Error): void => {
      const at = this.workers.indexOf(worker);
      if (at >= 0) this.workers.splice(at, 1);
      for (const [id, job] of this.pending) {
        if (job.worker !== worker) continue;
        this.pending.delete(id);
        job.reject(reason);
      }
    };
    worker.on('error', retire);
    worker.on('exit', (code) => retire(new Error(`issuance worker exited with code ${code}`)));
    this.workers.push(worker);
  }

  async issueAll(issuer: IssuerTemplate, items: readonly BatchItem[]): Promise<BatchResult[]> {
    const here = (chunk: readonly BatchItem[]): BatchResult[] => chunk.map((i) => fromOutcome(issueItem(issuer, i)));
    if (items.length < this.minBatchForWorkers || !this.ensureWorkers()) return here(items);
    this.armIdleTimer();
    const chunks = this.workers.length;
    const size = Math.ceil(items.length / chunks);
    const parts = await Promise.all(
      Array.from({ length: chunks }, (_, i) => items.slice(i * size, (i + 1) * size))
        .filter((c) => c.length > 0)
        .map((chunk) => this.run(issuer, chunk).then((r) => r.map(fromOutcome), () => here(chunk))),
    );
    return parts.flat();
  }

  private run(issuer: IssuerTemplate, items: readonly BatchItem[]): Promise<BatchOutcome[]> {
    const id = this.nextId++;
    const worker = this.workers[this.turn++ % this.workers.length]!;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { worker, resolve, reject });
      worker.postMessage({ id, issuer, items } satisfies BatchJob);
    });
  }

  get size(): number {
    return this.workers.length;
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.idleTimer);
    await this.stopWorkers();
  }
}

/** The compiled worker beside this module (running from dist/), or dist/'s copy when running from source. */
function workerFile(): URL | undefined {
  const sibling = new URL('./batch-worker.js', import.meta.url);
  if (existsSync(fileURLToPath(sibling))) return sibling;
  try {
    const built = join(packageRoot(import.meta.url), 'dist', 'ca', 'issuance', 'batch-worker.js');
    return existsSync(built) ? new URL(`file://${built}`) : undefined;
  } catch {
    return undefined;
  }
}

function fromOutcome(o: BatchOutcome): BatchResult {
  if (o.ok) return { ok: true, cert: Buffer.from(o.cert.buffer, o.cert.byteOffset, o.cert.byteLength) };
  return { ok: false, error: new CairnError(o.code as ErrorCode, o.message) };
}
