import { describe, expect, it } from 'vitest';
import { parseIdTemplate, renderIdTemplate, TemplateSyntaxError } from '../../../contract/id-template.js';
import { TemplateInstances } from '../../../node-agent/templates/instances.js';

const TD = 'example.org';
const ISTIO = 'spiffe://{td}/ns/{k8s:ns}/sa/{k8s:sa}';

describe('SPIFFE ID templates: parsing', () => {
  it("accepts Istio's convention and the unix one, with {td} or the trust domain spelled out", () => {
    expect(parseIdTemplate(ISTIO, TD).placeholders).toEqual(['k8s:ns', 'k8s:sa']);
    expect(parseIdTemplate('spiffe://example.org/uid/{unix:uid}', TD).placeholders).toEqual(['unix:uid']);
    expect(parseIdTemplate('spiffe://{td}/svc-{unix:user}/x', TD).placeholders).toEqual(['unix:user']);
  });

  it.each([
    ['spiffe://{td}/ns/{k8s:ns', /unclosed "\{"/],
    ['spiffe://{td}/ns/k8s:ns}', /unbalanced "\}"/],
    ['spiffe://{td}/ns/{ns}', /unknown placeholder \{ns\}/],
    ['spiffe://{td}/ns/{K8S:ns}', /unknown placeholder/],
    ['spiffe://{td}/a/{k8s:ns/x}', /unknown placeholder/],
    ['spiffe://{td}', /must have a path/],
    ['spiffe://{td}/', /must have a path/],
    ['spiffe://{td}//{unix:uid}', /valid SPIFFE ID/],
    ['spiffe://{td}/../{unix:uid}', /valid SPIFFE ID/],
    ['spiffe://{td}/a%2F/{unix:uid}', /valid SPIFFE ID/],
    ['spiffe://{td}/a/{unix:uid}/', /valid SPIFFE ID/],
    ['spiffe://{unix:uid}/a', /trust domain of a template is \{td\}/],
    ['http://{td}/a', /starts with spiffe:\/\//],
  ])('refuses %s', (text, message) => {
    expect(() => parseIdTemplate(text, TD)).toThrow(message);
  });

  it('tells a template of another trust domain apart (wrong_trust_domain)', () => {
    try {
      parseIdTemplate('spiffe://other.org/uid/{unix:uid}', TD);
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(TemplateSyntaxError);
      expect((err as TemplateSyntaxError).kind).toBe('wrong_trust_domain');
    }
  });
});

describe('SPIFFE ID templates: rendering with hostile selector values', () => {
  const render = (selectors: string[], template = ISTIO, dns: string[] = []) => renderIdTemplate(template, dns, TD, selectors);

  it('renders from the one selector of each placeholder, and says which selectors it read', () => {
    const r = render(['k8s:ns:payments', 'k8s:sa:api', 'k8s:pod-name:api-1']);
    expect(r).toEqual({ ok: true, spiffeId: 'spiffe://example.org/ns/payments/sa/api', dnsNames: [], used: ['k8s:ns:payments', 'k8s:sa:api'] });
    expect(render(['unix:uid:1000', 'unix:gid:1000'], 'spiffe://{td}/uid/{unix:uid}')).toMatchObject({ ok: true, spiffeId: 'spiffe://example.org/uid/1000' });
  });

  it.each([
    ['a slash', 'a/b', /cannot stand in a SPIFFE ID path segment/],
    ['a dot-dot', '..', /relative path segment/],
    ['a dot', '.', /relative path segment/],
    ['percent-encoding', 'a%2Fb', /cannot stand/],
    ['a space', 'a b', /cannot stand/],
    ['a colon', 'app:x', /cannot stand/],
    ['a query', 'a?b', /cannot stand/],
    ['a fragment', 'a#b', /cannot stand/],
    ['a NUL', 'a\u0000b', /cannot stand/],
    ['a newline', 'a\nb', /cannot stand/],
    ['unicode', 'paymënts', /cannot stand/],
    ['an empty value', '', /is empty/],
    ['a very long value', 'a'.repeat(256), /longer than 255/],
  ])('refuses a value with %s, never escaping it', (_what, value, reason) => {
    const r = render([`k8s:ns:${value}`, 'k8s:sa:api']);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.reason).toMatch(reason);
  });

  it('refuses a missing or ambiguous selector', () => {
    expect(render(['k8s:sa:api'])).toMatchObject({ ok: false, reason: expect.stringMatching(/no k8s:ns selector/) });
    expect(render(['k8s:ns:a', 'k8s:ns:b', 'k8s:sa:api'])).toMatchObject({ ok: false, reason: expect.stringMatching(/2 k8s:ns selectors/) });
  });

  it("refuses a value that would land in Cairn's reserved namespace", () => {
    expect(render(['unix:user:cairn'], 'spiffe://{td}/{unix:user}/x')).toMatchObject({ ok: false, reason: expect.stringMatching(/reserved/) });
  });

  it('renders DNS templates with DNS-label values only', () => {
    expect(render(['k8s:ns:payments', 'k8s:sa:api'], ISTIO, ['{k8s:sa}.{k8s:ns}.svc'])).toMatchObject({ ok: true, dnsNames: ['api.payments.svc'] });
    // a dot in a value would add a label: refused
    expect(render(['k8s:ns:payments', 'k8s:sa:api.evil.com'], ISTIO, ['{k8s:sa}.{k8s:ns}.svc'])).toMatchObject({ ok: false, reason: expect.stringMatching(/DNS name/) });
  });
});

describe('the agent side: template identities per selector set', () => {
  const template = { id: 'tpl1', parentId: 'spiffe://example.org/cairn/agent/a', selectors: [], spiffeIdTemplate: 'spiffe://{td}/uid/{unix:uid}', dnsTemplates: [], x509SvidTtl: null, jwtSvidTtl: null, hint: null, admin: false, adminRole: null, federatesWith: [], revision: 5 };

  it('gives callers with different values different identities, and the same one to callers with the same values', () => {
    const t = new TemplateInstances(TD);
    t.apply([template], [], true);
    const a = t.resolve(new Set(['unix:uid:1000', 'unix:gid:10']), 0);
    const b = t.resolve(new Set(['unix:uid:1001']), 0);
    const a2 = t.resolve(new Set(['unix:uid:1000', 'unix:gid:20']), 0);
    expect(a.instances[0]!.spiffeId).toBe('spiffe://example.org/uid/1000');
    expect(b.instances[0]!.spiffeId).toBe('spiffe://example.org/uid/1001');
    expect(a2.instances[0]!.id).toBe(a.instances[0]!.id);
    // the agent vouches only for what the template reads
    expect(a.instances[0]!.selectors).toEqual(['unix:uid:1000']);
  });

  it('records the reason when a value is refused, and drops identities of a deleted template', () => {
    const t = new TemplateInstances(TD);
    t.apply([{ ...template, spiffeIdTemplate: 'spiffe://{td}/user/{unix:user}' }], [], true);
    const r = t.resolve(new Set(['unix:user:..']), 0);
    expect(r.instances).toEqual([]);
    expect(r.refusals[0]).toMatch(/template tpl1 .*relative path segment/);
    const ok = t.resolve(new Set(['unix:user:alice']), 0);
    expect(t.apply([], ['tpl1'], false).dropped).toEqual([ok.instances[0]!.id]);
  });

  it('stops renewing identities nobody holds after the idle time', () => {
    const t = new TemplateInstances(TD, 1000);
    t.apply([template], [], true);
    const held = t.resolve(new Set(['unix:uid:1']), 0).instances[0]!;
    const idle = t.resolve(new Set(['unix:uid:2']), 0).instances[0]!;
    t.retain([held.id], 0);
    expect(t.pruneIdle(500)).toEqual([]);
    expect(t.pruneIdle(2000)).toEqual([idle.id]);
    t.release([held.id], 2000);
    expect(t.pruneIdle(3500)).toEqual([held.id]);
  });
});
