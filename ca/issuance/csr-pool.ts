import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { packageRoot } from '../../lib/paths.js';
import { CairnError, type ErrorCode } from '../../lib/errors.js';
import { verifyCsr, type VerifiedCsr } from './csr.js';
import type { CsrJob, CsrOutcome } from './csr-worker.js';
import type { SubjectKeyType } from './spki.js';

export type CsrResult = { readonly ok: true; readonly csr: VerifiedCsr } | { readonly ok: false; readonly error: CairnError };

/**
 * Verifies batches of CSRs on worker threads. Importing a public key and checking an ECDSA
 * signature costs ~130 µs per CSR in OpenSSL 3, several times the cost of signing the
 * certificate; on the event loop it would cap a batch at one core and stall every other request
 * meanwhile. Small batches stay on the calling thread, where a hand-off would cost more.
 */
export class CsrVerifierPool {
  private readonly workers: Worker[] = [];
  private readonly pending = new Map<number, { worker: Worker; resolve: (r: CsrOutcome[]) => void; reject: (e: Error) => void }>();
  private nextId = 1;
  private turn = 0;

  constructor(
    size: number = Math.max(1, availableParallelism()),
    private readonly minBatchForWorkers = 16,
  ) {
    const file = workerFile();
    if (!file) return; // no compiled worker (source checkout before a build): verify in-thread
    for (let i = 0; i < size; i++) this.spawn(file);
  }

  private spawn(file: URL): void {
    const worker = new Worker(file);
    worker.unref();
    worker.on('message', (msg: { id: number; results: CsrOutcome[] }) => {
      const job = this.pending.get(msg.id);
      this.pending.delete(msg.id);
      job?.resolve(msg.results);
    });
    // A dead worker must not strand requests: fail its jobs (the caller verifies them in-thread)
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
    worker.on('exit', (code) => retire(new Error(`CSR worker exited with code ${code}`)));
    this.workers.push(worker);
  }

  async verifyAll(ders: readonly Buffer[]): Promise<CsrResult[]> {
    if (ders.length < this.minBatchForWorkers || this.workers.length === 0) return ders.map(verifyHere);
    const chunks = this.workers.length;
    const size = Math.ceil(ders.length / chunks);
    const parts = await Promise.all(
      Array.from({ length: chunks }, (_, i) => ders.slice(i * size, (i + 1) * size))
        .filter((c) => c.length > 0)
        .map((chunk) => this.run(chunk).then((r) => r.map(fromOutcome), () => chunk.map(verifyHere))),
    );
    return parts.flat();
  }

  private run(ders: readonly Buffer[]): Promise<CsrOutcome[]> {
    const id = this.nextId++;
    const worker = this.workers[this.turn++ % this.workers.length]!;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { worker, resolve, reject });
      worker.postMessage({ id, ders: [...ders] } satisfies CsrJob);
    });
  }

  get size(): number {
    return this.workers.length;
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
    this.workers.length = 0;
  }
}

/** The compiled worker beside this module (running from dist/), or dist/'s copy when running from source. */
function workerFile(): URL | undefined {
  const sibling = new URL('./csr-worker.js', import.meta.url);
  if (existsSync(fileURLToPath(sibling))) return sibling;
  try {
    const built = new URL(`file://${join(packageRoot(import.meta.url), 'dist', 'ca', 'issuance', 'csr-worker.js')}`);
    return existsSync(fileURLToPath(built)) ? built : undefined;
  } catch {
    return undefined;
  }
}

function verifyHere(der: Buffer): CsrResult {
  try {
    return { ok: true, csr: verifyCsr(der) };
  } catch (err) {
    if (err instanceof CairnError) return { ok: false, error: err };
    throw err;
  }
}

function fromOutcome(o: CsrOutcome): CsrResult {
  if (!o.ok) return { ok: false, error: new CairnError(o.code as ErrorCode, o.message) };
  return {
    ok: true,
    csr: {
      publicKey: {
        spki: Buffer.from(o.spki),
        keyType: o.keyType as SubjectKeyType,
        keyBits: Buffer.from(o.keyBits),
        ...(o.rsaBits === undefined ? {} : { rsaBits: o.rsaBits }),
      },
    },
  };
}
