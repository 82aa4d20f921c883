import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestCa, type TestCa } from '../support/ca.js';
import { storeKind } from '../support/db.js';
import { runCairnAsync } from '../support/processes.js';

const TD = 'selectors.test';
const AGENT = `spiffe://${TD}/cairn/agent/join_token/a`;
const SHA = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

describe(`selectors are checked when entries and tokens are written (${storeKind()} store)`, () => {
  let ca: TestCa;
  let n = 0;
  const entry = async (selectors: string[], extra: Record<string, unknown> = {}): Promise<{ status: number; body: { code?: string; message?: string; id?: string; selectors?: string[] } }> => {
    const res = await ca.admin('/v1/entries', { body: { spiffeId: `spiffe://${TD}/w${n++}`, parentId: AGENT, selectors, ...extra } });
    return { status: res.status, body: await res.json() };
  };
  const cli = (args: string[]) => runCairnAsync(args, { CAIRN_SERVER: ca.url, CAIRN_ADMIN_TOKEN: ca.adminToken, CAIRN_DATA_DIR: ca.dataDir });

  beforeAll(async () => {
    ca = await startTestCa();
    expect((await ca.admin('/v1/trust-domains', { body: { name: TD } })).status).toBe(201);
  });
  afterAll(() => ca?.close());

  it('refuses `uid:1`, `unix:uid`, `unix:userid:1`, `unix:uid:abc` with 400 invalid_selector naming the selector and the form', async () => {
    for (const [bad, expected] of [
      ['uid:1', /unknown selector type "uid"/],
      ['unix:uid', /expected unix:uid:<value> where the value is a decimal uid/],
      ['unix:userid:1', /unix has no selector "userid"/],
      ['unix:uid:abc', /expected unix:uid:<value> where the value is a decimal uid/],
    ] as const) {
      const { status, body } = await entry([bad]);
      expect(status, bad).toBe(400);
      expect(body.code, bad).toBe('invalid_selector');
      expect(body.message, bad).toContain(`selector "${bad}"`);
      expect(body.message, bad).toMatch(expected);
    }
    const token = await ca.admin('/v1/tokens', { body: { trustDomain: TD, selectors: ['rack:r1'] } });
    expect(token.status).toBe(400);
    expect(await token.json()).toMatchObject({ code: 'invalid_selector' });
    expect((await ca.admin('/v1/tokens', { body: { trustDomain: TD, selectors: ['join_token:rack:r1'] } })).status).toBe(201);
  });

  it('issue 11: refuses an entry only unix:path/unix:sha256 select (any local user could match it), at creation and at update', async () => {
    const weak = await entry([`unix:path:/usr/local/bin/payments`, `unix:sha256:${SHA}`]);
    expect(weak.status).toBe(400);
    expect(weak.body.code).toBe('weak_selectors');
    expect(weak.body.message).toMatch(/let any local process match.*unix:uid/);
    const bound = await entry(['unix:uid:1001', `unix:path:/usr/local/bin/payments`, `unix:sha256:${SHA}`]);
    expect(bound.status).toBe(201);
    const patched = await ca.admin(`/v1/entries/${bound.body.id}`, { method: 'PATCH', body: { selectors: [`unix:path:/usr/local/bin/payments`, `unix:sha256:${SHA}`] } });
    expect(patched.status).toBe(400);
    expect((await patched.json()).code).toBe('weak_selectors');
    // node aliases carry node selectors and are not workload entries
    const alias = await ca.admin('/v1/entries', { body: { spiffeId: `spiffe://${TD}/racks/r1`, parentId: `spiffe://${TD}/cairn/server`, selectors: ['join_token:rack:r1'] } });
    expect(alias.status).toBe(201);
  });

  it('stores an unknown selector type only with allowUnknownSelectorTypes', async () => {
    expect((await entry(['unix:uid:5', 'docker:label:app:web'])).status).toBe(400);
    const ok = await entry(['unix:uid:5', 'docker:label:app:web'], { allowUnknownSelectorTypes: true });
    expect(ok.status).toBe(201);
    expect(ok.body.selectors).toEqual(['docker:label:app:web', 'unix:uid:5']);
    expect(ok.body).not.toHaveProperty('allowUnknownSelectorTypes');
  });

  it('the CLI prints `error:` lines naming the selector, and takes --allow-unknown-selector-type', { timeout: 180_000 }, async () => {
    const base = ['entry', 'create', '--parent-id', AGENT];
    const bad = await cli([...base, '--spiffe-id', `spiffe://${TD}/cli-a`, '--selector', 'unix:uid:abc']);
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(/^error: invalid_selector: --selector "unix:uid:abc": expected unix:uid:<value> where the value is a decimal uid/m);
    const weak = await cli([...base, '--spiffe-id', `spiffe://${TD}/cli-b`, '--selector', 'unix:path:/usr/bin/true']);
    expect(weak.status).toBe(1);
    expect(weak.stderr).toMatch(/^error: weak_selectors: /m);
    const unknown = await cli([...base, '--spiffe-id', `spiffe://${TD}/cli-c`, '--selector', 'unix:uid:7', '--selector', 'docker:label:app:web']);
    expect(unknown.stderr).toMatch(/^error: invalid_selector: .*--allow-unknown-selector-type/m);
    const opted = await cli([...base, '--spiffe-id', `spiffe://${TD}/cli-c`, '--selector', 'unix:uid:7', '--selector', 'docker:label:app:web', '--allow-unknown-selector-type']);
    expect(opted.status, opted.stderr).toBe(0);
    const token = await cli(['token', 'create', '--trust-domain', TD, '--selector', 'k8s_psat:cluster:prod']);
    expect(token.status).toBe(1);
    expect(token.stderr).toMatch(/^error: invalid_selector: --selector "k8s_psat:cluster:prod": .*join_token:<label>/m);
  });
});
