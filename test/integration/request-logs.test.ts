import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestCa, type TestCa } from '../support/ca.js';
import { storeKind } from '../support/db.js';

type Line = { level: number; msg: string; [k: string]: unknown };

describe(`request logs (${storeKind()} store)`, () => {
  let ca: TestCa;
  beforeAll(async () => {
    ca = await startTestCa();
  }, 180_000);
  afterAll(() => ca.close());

  /** The log lines written since `from` (a length of ca.logs()), once `until` holds for them. */
  async function linesSince(from: number, until: (lines: Line[]) => boolean): Promise<Line[]> {
    const deadline = Date.now() + 20_000;
    for (;;) {
      const lines = ca.logs().slice(from).split('\n').filter(Boolean).map((l) => JSON.parse(l) as Line);
      if (until(lines) || Date.now() > deadline) return lines;
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  it('a request that went well is two debug lines, not info', async () => {
    const from = ca.logs().length;
    expect((await fetch(`${ca.url}/healthz`)).status).toBe(200);
    expect((await ca.admin('/v1/trust-domains')).status).toBe(200);
    const lines = await linesSince(from, (ls) => ls.filter((l) => l.msg === 'request completed').length >= 2);
    const perRequest = lines.filter((l) => l.msg === 'incoming request' || l.msg === 'request completed');
    expect(perRequest).toHaveLength(4);
    for (const l of perRequest) expect(l.level).toBe(20);
    expect(lines.filter((l) => l.level >= 30)).toEqual([]);
  });

  it('a refused credential is a warning naming the route and the caller; a bad request is a debug line', async () => {
    const from = ca.logs().length;
    const refused = await fetch(`${ca.url}/v1/trust-domains?pageSize=5`, { headers: { authorization: 'Bearer cairn-admin.wrong' } });
    expect(refused.status).toBe(401);
    expect((await ca.admin('/v1/trust-domains', { body: '{"name": ' })).status).toBe(400);
    const lines = await linesSince(from, (ls) => ls.filter((l) => l.msg === 'request completed').length >= 2);
    expect(lines.filter((l) => l.msg === 'request refused')).toEqual([
      expect.objectContaining({ level: 40, status: 401, code: 'unauthenticated', method: 'GET', url: '/v1/trust-domains', remoteAddress: '127.0.0.1' }),
    ]);
    expect(lines.filter((l) => l.msg === 'request rejected')).toEqual([expect.objectContaining({ level: 20, status: 400, code: 'malformed_json' })]);
    expect(ca.logs()).not.toContain('cairn-admin.wrong');
  });
});
