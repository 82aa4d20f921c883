import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateKeyPair, SignJWT } from 'jose';
import { afterEach, describe, expect, it } from 'vitest';
import type { SyncEntry, SyncResponse } from '../../../contract/agent-api.js';
import { NodeAgent } from '../../../node-agent/agent.js';
import type { CaClient } from '../../../node-agent/ca-client.js';
import { derToPem } from '../../../spiffe/bundle/bundle.js';
import type { Workload } from '../../../workload-api/ports.js';
import { testCaCertificate } from '../../support/certs.js';
import { capturingLogger } from '../../support/logs.js';
import { waitFor } from '../../support/wait.js';

const TD = 'jwt-answers.test';
const AGENT = `spiffe://${TD}/agent`;

const entry = (hint: string): SyncEntry => ({
  id: 'e1', spiffeId: `spiffe://${TD}/app`, parentId: AGENT, selectors: ['unix:uid:1000'], x509SvidTtl: null, jwtSvidTtl: null,
  dnsNames: [], hint, admin: false, adminRole: null, federatesWith: [], expiresAt: null, revision: hint.length,
});

/**
 * FetchJWTSVID's answers are kept per caller view, so the Workload API encodes each once: the same
 * request must get the very same answer while its tokens are the cached ones, and a fresh one as
 * soon as jwtFor would mint or the view changes.
 */
describe('node agent: FetchJWTSVID answers', () => {
  const cleanups: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  async function start() {
    const dir = mkdtempSync(join(tmpdir(), 'cairn-jwt-answers-'));
    const ca = await testCaCertificate(TD);
    const { privateKey } = await generateKeyPair('ES256');
    let now = Date.now();
    let mints = 0;
    let next: SyncResponse | undefined;
    let wake: (() => void) | undefined;
    const bundle = { sequence: 1, x509Authorities: [ca.der.toString('base64')], jwtAuthorities: [] };
    const client = {
      credentials: { caUrl: 'https://ca.invalid', authorityPem: '', chainPem: derToPem(ca.der), keyPem: '' },
      async sync(revision: number, _b: number, wait: number, signal?: AbortSignal): Promise<SyncResponse> {
        if (revision === 0) return { revision: 1, full: true, parents: [AGENT], entries: [entry('one')], removed: [], bundle };
        while (!next && !signal?.aborted && wait > 0) await new Promise<void>((r) => { wake = r; signal?.addEventListener('abort', () => r(), { once: true }); });
        const answer = next ?? { revision, full: false, parents: [AGENT], entries: [], removed: [], bundle };
        next = undefined;
        return answer;
      },
      async issue() {
        return { bundle: [], results: [] };
      },
      async mintJwt(_entryId: string, audience: readonly string[]) {
        mints++;
        const iat = Math.floor(now / 1000);
        const token = await new SignJWT({ aud: [...audience], jti: String(mints) })
          .setProtectedHeader({ alg: 'ES256', kid: 'k1', typ: 'JWT' })
          .setSubject(`spiffe://${TD}/app`).setIssuedAt(iat).setExpirationTime(iat + 300).sign(privateKey);
        return { spiffeId: `spiffe://${TD}/app`, token, expiresAt: new Date((iat + 300) * 1000).toISOString() };
      },
    } as unknown as CaClient;
    const agent = new NodeAgent({
      client, clock: { now: () => new Date(now) }, logger: capturingLogger().logger, dataDir: dir, spiffeId: AGENT, trustDomain: TD,
      identify: () => ({ selectors: async () => ['unix:uid:1000'], recheck() {}, release() {} }),
    });
    const stop = new AbortController();
    const running = agent.run(stop.signal);
    cleanups.push(async () => {
      stop.abort();
      await running.catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    });
    await waitFor('the agent to sync', () => (agent.ready() ? true : undefined), 10_000);
    const workload = (): Promise<Workload> => agent.attestConnection({ pid: 1, uid: 1000, gid: 1000 }).workload();
    return {
      workload,
      remembered: () => (agent as unknown as { jwtAnswers: Map<string, unknown> }).jwtAnswers.size,
      mints: () => mints,
      advance: (ms: number) => void (now += ms),
      push: (e: SyncEntry) => {
        next = { revision: 2, full: false, parents: [AGENT], entries: [e], removed: [], bundle };
        wake?.();
      },
    };
  }

  it('gives the same answer object to the same request, across connections, while its token is cached', async () => {
    const t = await start();
    const w = await t.workload();
    const first = await w.jwtSvids(['payments'], undefined);
    expect(first).toHaveLength(1);
    expect(await w.jwtSvids(['payments'], undefined)).toBe(first);
    expect(await (await t.workload()).jwtSvids(['payments'], undefined)).toBe(first);
    expect(await w.jwtSvids(['payments'], `spiffe://${TD}/app`)).not.toBe(first); // another request, the same token
    expect(t.mints()).toBe(1);
  });

  it('does not take an audience holding the separator for a list of two', async () => {
    const t = await start();
    const w = await t.workload();
    const joined = await w.jwtSvids(['a\u0000b'], undefined);
    const split = await w.jwtSvids(['a', 'b'], undefined);
    expect(joined[0]!.token).not.toBe(split[0]!.token);
    expect(t.mints()).toBe(2);
  });

  it('answers afresh past the token half-life, and after the view changes', async () => {
    const t = await start();
    const w = await t.workload();
    const first = await w.jwtSvids(['payments'], undefined);
    t.advance(151_000); // past half of the 300 s lifetime: jwtFor mints again
    const renewed = await w.jwtSvids(['payments'], undefined);
    expect(renewed).not.toBe(first);
    expect(renewed[0]!.token).not.toBe(first[0]!.token);
    expect(t.mints()).toBe(2);
    t.push(entry('changed hint'));
    await waitFor('the entry change', async () => ((await w.jwtSvids(['payments'], undefined))[0]!.hint === 'changed hint' ? true : undefined), 10_000);
    const changed = await w.jwtSvids(['payments'], undefined);
    expect(changed).not.toBe(renewed);
    expect(changed[0]!.token).toBe(renewed[0]!.token); // the token is still cached: only the answer is new
    expect(t.mints()).toBe(2);
  });

  it('remembers no more answers than it caches tokens, however many audiences a caller asks for', async () => {
    const t = await start();
    const w = await t.workload();
    for (let i = 0; i < 10_050; i++) await w.jwtSvids([`aud-${i}`], undefined);
    expect(t.mints()).toBe(10_050);
    expect(t.remembered()).toBe(10_000);
  }, 60_000);
});
