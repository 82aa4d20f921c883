import { createHash } from 'node:crypto';
import type { SyncTemplate } from '../../contract/template-api.js';
import { renderIdTemplate } from '../../contract/id-template.js';

/**
 * One identity a template gives: the template rendered for one set of selector values. It is held
 * like an entry (one key and SVID, renewed at half-life) under its own id.
 */
export interface TemplateInstance {
  /** `t.<template id>.<hash of the selectors used>`: never an entry id (those are alphanumeric). */
  readonly id: string;
  readonly templateId: string;
  /** What the agent vouches for to the CA: the template's required selectors and the values its placeholders read. */
  readonly selectors: readonly string[];
  readonly spiffeId: string;
  readonly hint: string | null;
  readonly federatesWith: readonly string[];
  readonly revision: number;
  /** Connections using it now; 0 with lastUsed long ago: nobody needs it, stop renewing it. */
  refs: number;
  lastUsed: number;
}

/** What the templates give a caller: the identities, and why each template that applies gives none. */
export interface TemplateResolution {
  readonly instances: readonly TemplateInstance[];
  readonly refusals: readonly string[];
}

/** How long an instance nobody is connected for is kept (and renewed) after its last use. */
export const DEFAULT_IDLE_MS = 10 * 60_000;

/**
 * The agent's templates and the identities it rendered from them. A caller that matches no entry
 * gets every template whose selectors it has, rendered from its own selectors (node-agent/agent.ts
 * asks only then: an explicit entry wins). A value that cannot stand in a SPIFFE ID is a refusal with
 * its reason (discovery records it), never an escaped or altered ID; the CA renders again and issues
 * only what it renders itself.
 */
export class TemplateInstances {
  private readonly templates = new Map<string, SyncTemplate>();
  private readonly instances = new Map<string, TemplateInstance>();

  constructor(
    private readonly trustDomain: string,
    private readonly idleMs = DEFAULT_IDLE_MS,
  ) {}

  get size(): number {
    return this.templates.size;
  }

  /** Sync's templates; returns the ids of instances that are gone (their SVIDs must go too). */
  apply(changed: readonly SyncTemplate[], removed: readonly string[], full: boolean): { dirty: boolean; dropped: string[] } {
    const gone = new Set(removed);
    if (full) for (const id of this.templates.keys()) if (!changed.some((t) => t.id === id)) gone.add(id);
    let dirty = false;
    for (const id of gone) dirty = this.templates.delete(id) || dirty;
    for (const t of changed) {
      this.templates.set(t.id, t);
      dirty = true;
    }
    // a template deleted or changed: its identities go (a changed one renders again at the next call)
    const dropped: string[] = [];
    for (const [id, inst] of this.instances) {
      if (this.templates.get(inst.templateId)?.revision !== inst.revision) {
        this.instances.delete(id);
        dropped.push(id);
      }
    }
    return { dirty: dirty || dropped.length > 0, dropped };
  }

  get(id: string): TemplateInstance | undefined {
    return this.instances.get(id);
  }

  all(): IterableIterator<TemplateInstance> {
    return this.instances.values();
  }

  /** Renders every template that applies to a caller with these selectors. */
  resolve(selectors: ReadonlySet<string>, now: number): TemplateResolution {
    const list = [...selectors];
    const instances: TemplateInstance[] = [];
    const refusals: string[] = [];
    for (const t of [...this.templates.values()].sort((a, b) => a.id.localeCompare(b.id))) {
      if (!t.selectors.every((s) => selectors.has(s))) continue;
      const r = renderIdTemplate(t.spiffeIdTemplate, [], this.trustDomain, list);
      if (!r.ok) {
        refusals.push(`template ${t.id} (${t.spiffeIdTemplate}): ${r.reason}`);
        continue;
      }
      const claimed = [...new Set([...t.selectors, ...r.used])].sort();
      const id = `t.${t.id}.${createHash('sha256').update(claimed.join('\n')).digest('hex').slice(0, 24)}`;
      let inst = this.instances.get(id);
      if (!inst || inst.revision !== t.revision) {
        inst = { id, templateId: t.id, selectors: claimed, spiffeId: r.spiffeId, hint: t.hint, federatesWith: t.federatesWith, revision: t.revision, refs: 0, lastUsed: now };
        this.instances.set(id, inst);
      }
      instances.push(inst);
    }
    return { instances, refusals };
  }

  retain(ids: readonly string[], now: number): void {
    for (const id of ids) {
      const inst = this.instances.get(id);
      if (inst) {
        inst.refs++;
        inst.lastUsed = now;
      }
    }
  }

  release(ids: readonly string[], now: number): void {
    for (const id of ids) {
      const inst = this.instances.get(id);
      if (inst) {
        inst.refs = Math.max(0, inst.refs - 1);
        inst.lastUsed = now;
      }
    }
  }

  /** Instances no connection holds and nobody asked for within the idle time: dropped, ids returned. */
  pruneIdle(now: number): string[] {
    const dropped: string[] = [];
    for (const [id, inst] of this.instances) {
      if (inst.refs === 0 && now - inst.lastUsed > this.idleMs) {
        this.instances.delete(id);
        dropped.push(id);
      }
    }
    return dropped;
  }
}
