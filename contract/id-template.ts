import { SpiffeId } from '../spiffe/id.js';

/**
 * Workload identity templates: `spiffe://{td}/ns/{k8s:ns}/sa/{k8s:sa}`. The CA checks a template
 * when it is written and renders it again for every SVID it issues; the agent renders it to decide
 * which callers a template serves. Both use this module, so they cannot disagree. It loads no schema
 * library (the agent imports it).
 *
 * A placeholder is `{td}` (the trust domain) or `{type:key}`: the value of the caller's one selector
 * `type:key:<value>`. Selector values are the caller's to influence (a pod's namespace, a user name),
 * so every value is treated as hostile: it must be a whole, plain path-segment piece — letters,
 * digits, '.', '-', '_' only, never empty, never '.' or '..', at most 255 characters — or the
 * rendering is refused. Nothing is escaped or percent-encoded: a value that would need it is refused.
 */

export const MAX_TEMPLATE_LENGTH = 2048;
export const MAX_VALUE_LENGTH = 255;

const PLACEHOLDER_NAME = /^(td|[a-z0-9_-]{1,64}:[A-Za-z0-9_.-]{1,64})$/;
const SEGMENT_VALUE = /^[A-Za-z0-9._-]+$/;
const DNS_VALUE = /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;

export type TemplatePart = { readonly text: string } | { readonly placeholder: string };

export interface ParsedTemplate {
  /** The path after the trust domain ("/ns/{k8s:ns}"), as parts. */
  readonly parts: readonly TemplatePart[];
  /** The `type:key` names it reads, in order of first use (`td` excluded). */
  readonly placeholders: readonly string[];
}

export class TemplateSyntaxError extends Error {
  override readonly name = 'TemplateSyntaxError';
  constructor(
    message: string,
    /** `wrong_trust_domain` when the template names another trust domain; else `syntax`. */
    readonly kind: 'syntax' | 'wrong_trust_domain' = 'syntax',
  ) {
    super(message);
  }
}

/** Splits text into literal parts and placeholders; unbalanced or unknown braces are errors. */
export function splitPlaceholders(text: string): { parts: TemplatePart[]; placeholders: string[] } {
  const parts: TemplatePart[] = [];
  const placeholders: string[] = [];
  let i = 0;
  while (i < text.length) {
    const open = text.indexOf('{', i);
    const close = text.indexOf('}', i);
    if (close !== -1 && (open === -1 || close < open)) throw new TemplateSyntaxError(`unbalanced "}" at position ${close}`);
    if (open === -1) {
      parts.push({ text: text.slice(i) });
      break;
    }
    if (open > i) parts.push({ text: text.slice(i, open) });
    const end = text.indexOf('}', open);
    if (end === -1) throw new TemplateSyntaxError(`unclosed "{" at position ${open}`);
    const name = text.slice(open + 1, end);
    if (!PLACEHOLDER_NAME.test(name)) {
      throw new TemplateSyntaxError(`unknown placeholder {${name}}: placeholders are {td} or {type:key} naming a selector, e.g. {k8s:ns} or {unix:uid}`);
    }
    parts.push({ placeholder: name });
    if (name !== 'td' && !placeholders.includes(name)) placeholders.push(name);
    i = end + 1;
  }
  return { parts, placeholders };
}

/**
 * Parses a SPIFFE ID template of `trustDomain`: `spiffe://{td}/…` or `spiffe://<trustDomain>/…`,
 * with a path. Checks that the result is a valid SPIFFE ID when every placeholder holds a plain value.
 */
export function parseIdTemplate(text: string, trustDomain: string): ParsedTemplate {
  if (text.length > MAX_TEMPLATE_LENGTH) throw new TemplateSyntaxError(`a template is at most ${MAX_TEMPLATE_LENGTH} characters`);
  const scheme = 'spiffe://';
  if (!text.startsWith(scheme)) throw new TemplateSyntaxError('a SPIFFE ID template starts with spiffe://{td}/ (or spiffe://<trust domain>/)');
  const rest = text.slice(scheme.length);
  const slash = rest.indexOf('/');
  const authority = slash === -1 ? rest : rest.slice(0, slash);
  if (authority !== '{td}' && authority !== trustDomain) {
    if (authority.includes('{') || authority.includes('}')) throw new TemplateSyntaxError('the trust domain of a template is {td} or the trust domain itself; no other placeholder may stand there');
    throw new TemplateSyntaxError(`the template names trust domain ${JSON.stringify(authority)}, not ${trustDomain}`, 'wrong_trust_domain');
  }
  if (slash === -1 || rest.length === slash + 1) throw new TemplateSyntaxError('a SPIFFE ID template must have a path (spiffe://{td}/…)');
  const { parts, placeholders } = splitPlaceholders(rest.slice(slash));
  // The shape with plain values must be a valid SPIFFE ID: empty segments, '.', '..' or bad characters in the literal text are caught here.
  const sample = parts.map((p) => ('text' in p ? p.text : p.placeholder === 'td' ? trustDomain : 'x')).join('');
  try {
    SpiffeId.parse(`${scheme}${trustDomain}${sample}`);
  } catch (err) {
    throw new TemplateSyntaxError(`the template cannot give a valid SPIFFE ID: ${(err as Error).message}`);
  }
  return { parts, placeholders };
}

export type RenderResult =
  | { readonly ok: true; readonly spiffeId: string; readonly dnsNames: readonly string[]; /** The selectors the placeholders read. */ readonly used: readonly string[] }
  | { readonly ok: false; readonly reason: string };

/** The one value of selector `type:key` among the caller's, or why there is none usable. */
function valueOf(name: string, selectors: readonly string[]): { value: string; selector: string } | { reason: string } {
  const prefix = `${name}:`;
  const values = [...new Set(selectors.filter((s) => s.startsWith(prefix)).map((s) => s.slice(prefix.length)))];
  if (values.length === 0) return { reason: `the caller has no ${name} selector for placeholder {${name}}` };
  if (values.length > 1) return { reason: `the caller has ${values.length} ${name} selectors: placeholder {${name}} needs exactly one` };
  return { value: values[0]!, selector: prefix + values[0]! };
}

const shown = (v: string): string => JSON.stringify(v.length > 64 ? `${v.slice(0, 64)}…` : v);

function renderParts(parts: readonly TemplatePart[], trustDomain: string, selectors: readonly string[], used: string[], accept: (v: string) => string | undefined): string | { reason: string } {
  let out = '';
  for (const p of parts) {
    if ('text' in p) {
      out += p.text;
      continue;
    }
    if (p.placeholder === 'td') {
      out += trustDomain;
      continue;
    }
    const found = valueOf(p.placeholder, selectors);
    if ('reason' in found) return found;
    const refusal = accept(found.value);
    if (refusal) return { reason: `selector ${p.placeholder} value ${shown(found.value)} ${refusal}` };
    if (!used.includes(found.selector)) used.push(found.selector);
    out += found.value;
  }
  return out;
}

const segmentRefusal = (v: string): string | undefined => {
  if (v.length === 0) return 'is empty';
  if (v.length > MAX_VALUE_LENGTH) return `is longer than ${MAX_VALUE_LENGTH} characters`;
  if (v === '.' || v === '..') return 'is a relative path segment';
  if (!SEGMENT_VALUE.test(v)) return "cannot stand in a SPIFFE ID path segment (letters, digits, '.', '-' and '_' only)";
  return undefined;
};

const dnsRefusal = (v: string): string | undefined => (DNS_VALUE.test(v) ? undefined : 'cannot stand in a DNS name (one label: letters, digits and inner hyphens, at most 63)');

/**
 * Renders a template for a caller with these selectors: the SPIFFE ID, the DNS names, and the
 * selectors it read; or the reason it cannot. `dnsTemplates` are parsed with splitPlaceholders.
 */
export function renderIdTemplate(template: string, dnsTemplates: readonly string[], trustDomain: string, selectors: readonly string[]): RenderResult {
  let parsed: ParsedTemplate;
  try {
    parsed = parseIdTemplate(template, trustDomain);
  } catch (err) {
    return { ok: false, reason: `the template is invalid: ${(err as Error).message}` };
  }
  const used: string[] = [];
  const path = renderParts(parsed.parts, trustDomain, selectors, used, segmentRefusal);
  if (typeof path !== 'string') return { ok: false, reason: path.reason };
  let id: SpiffeId;
  try {
    id = SpiffeId.parse(`spiffe://${trustDomain}${path}`);
  } catch (err) {
    return { ok: false, reason: `the rendered ID is not a valid SPIFFE ID: ${(err as Error).message}` };
  }
  // Cairn's own namespace (agents, servers): no selector value may reach it.
  if (id.path === '/cairn' || id.path.startsWith('/cairn/')) return { ok: false, reason: `the rendered ID ${id.toString()} is under /cairn, reserved for Cairn's agents and servers` };
  const dnsNames: string[] = [];
  for (const d of dnsTemplates) {
    let parts: TemplatePart[];
    try {
      parts = splitPlaceholders(d).parts;
    } catch (err) {
      return { ok: false, reason: `DNS template ${shown(d)} is invalid: ${(err as Error).message}` };
    }
    const name = renderParts(parts, trustDomain, selectors, used, dnsRefusal);
    if (typeof name !== 'string') return { ok: false, reason: name.reason };
    dnsNames.push(name.toLowerCase());
  }
  return { ok: true, spiffeId: id.toString(), dnsNames, used };
}
