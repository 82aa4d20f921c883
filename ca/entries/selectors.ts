import { CairnError } from '../../lib/errors.js';

/**
 * What each known selector type may say, so an entry that can never match (`uid:1`, `unix:uid`,
 * `unix:userid:1`, `unix:uid:abc`, an uppercase hash) is refused when it is written, not discovered
 * when a workload gets no identity. The forms are those the agent's workload attestors (unix, k8s,
 * systemd) and the CA's node attestors (k8s_psat, x509pop) produce, and the labels an admin gives a
 * join token; a type Cairn does not know is stored only with an explicit opt-in.
 */

/** Where a selector set is used: a workload entry, a node alias (parent …/cairn/server), a token's node selectors. */
export type SelectorUse = 'workload' | 'node-alias' | 'token';

interface Form {
  /** What the value looks like, for the error message. */
  readonly expected: string;
  readonly valid: (value: string) => boolean;
}

const MAX_U32_ID = 4294967294; // (uid_t)-1 means "no id"
const decimalId = (v: string): boolean => /^(0|[1-9][0-9]{0,9})$/.test(v) && Number(v) <= MAX_U32_ID;
const printable = (v: string): boolean => v.length > 0 && !/[\u0000-\u001f\u007f]/.test(v);
const noSpace = (v: string): boolean => printable(v) && !/\s/.test(v);
const posixName = (v: string): boolean => /^[A-Za-z0-9_.][A-Za-z0-9_.-]{0,255}\$?$/.test(v);
const absolutePath = (v: string): boolean => v.startsWith('/') && printable(v) && v.length <= 4096;
const lowerHex = (len: string) => (v: string): boolean => new RegExp(`^[0-9a-f]{${len}}$`).test(v);
const dnsLabel = (v: string): boolean => /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(v);
const dnsSubdomain = (v: string): boolean => v.length <= 253 && v.split('.').every(dnsLabel);
const k8sUid = (v: string): boolean => /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$|^[0-9a-f]{32}$/.test(v);
const labelName = (v: string): boolean => /^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/.test(v);
const labelKey = (v: string): boolean => {
  const slash = v.indexOf('/');
  return slash < 0 ? labelName(v) : dnsSubdomain(v.slice(0, slash)) && labelName(v.slice(slash + 1));
};
/** `<key>:<value>`; label keys hold no ':', so the first one separates them. The value may be empty. */
const label = (v: string): boolean => {
  const i = v.indexOf(':');
  if (i < 0) return false;
  const value = v.slice(i + 1);
  return labelKey(v.slice(0, i)) && (value === '' || labelName(value));
};
/** A unit that can hold processes (services and scopes), as systemd names it. */
const unitName = (v: string): boolean => v.length <= 255 && /^[A-Za-z0-9:_.\\-]+(@[A-Za-z0-9:_.\\-]*)?\.(service|scope)$/.test(v);

const id = (what: string): Form => ({ expected: `a decimal ${what} (0–${MAX_U32_ID})`, valid: decimalId });
const name = (what: string): Form => ({ expected: `a ${what} name as in /etc/passwd or /etc/group`, valid: posixName });
const LABEL: Form = { expected: '<key>:<value>, a Kubernetes label', valid: label };

/** Known types → their sub-selectors → the value form. */
const FORMS: Readonly<Record<string, Readonly<Record<string, Form>>>> = {
  unix: {
    uid: id('uid'),
    gid: id('gid'),
    user: name('user'),
    group: name('group'),
    supplementary_gid: id('gid'),
    supplementary_group: name('group'),
    path: { expected: 'an absolute path', valid: absolutePath },
    sha256: { expected: '64 lowercase hex digits', valid: lowerHex('64') },
  },
  k8s: {
    ns: { expected: 'a namespace (a DNS label)', valid: dnsLabel },
    sa: { expected: 'a service account name (a DNS subdomain)', valid: dnsSubdomain },
    'pod-name': { expected: 'a pod name (a DNS subdomain)', valid: dnsSubdomain },
    'pod-uid': { expected: 'a pod UID (lowercase UUID)', valid: k8sUid },
    'pod-label': LABEL,
    'container-name': { expected: 'a container name (a DNS label)', valid: dnsLabel },
    'container-image': { expected: 'an image reference or image ID, without spaces', valid: (v) => noSpace(v) && v.length <= 1024 },
    'node-name': { expected: 'a node name (a DNS subdomain)', valid: dnsSubdomain },
  },
  systemd: {
    id: { expected: 'a service or scope unit name, e.g. nginx.service', valid: unitName },
    fragment_path: { expected: 'the absolute path of a unit file', valid: absolutePath },
  },
  k8s_psat: {
    cluster: { expected: 'a cluster name as configured with `attestor k8s-psat add`', valid: (v) => /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/.test(v) },
    agent_ns: { expected: 'a namespace (a DNS label)', valid: dnsLabel },
    agent_sa: { expected: 'a service account name (a DNS subdomain)', valid: dnsSubdomain },
    agent_pod_name: { expected: 'a pod name (a DNS subdomain)', valid: dnsSubdomain },
    agent_pod_uid: { expected: 'a pod UID (lowercase UUID)', valid: k8sUid },
    agent_node_name: { expected: 'a node name (a DNS subdomain)', valid: dnsSubdomain },
    agent_node_uid: { expected: 'a node UID', valid: (v) => /^[A-Za-z0-9-]{1,128}$/.test(v) },
    agent_pod_label: LABEL,
    agent_node_label: LABEL,
  },
  x509pop: {
    subject: { expected: 'cn:<common name>', valid: (v) => v.startsWith('cn:') && printable(v.slice(3)) },
    ca: { expected: 'fingerprint:<SHA-1 of the manufacturer CA certificate, 40 lowercase hex digits>', valid: (v) => v.startsWith('fingerprint:') && lowerHex('40')(v.slice(12)) },
    serialnumber: { expected: 'the device certificate serial in lowercase hex', valid: lowerHex('1,64') },
    san: { expected: '<dns|uri|ip|email>:<value>', valid: (v) => /^(dns|uri|ip|email):/.test(v) && noSpace(v.slice(v.indexOf(':') + 1)) },
  },
};

/** join_token:<label>: whatever an admin gives a join token to group its node under aliases. */
const JOIN_TOKEN: Form = { expected: 'a label without spaces, e.g. join_token:rack:r1', valid: (v) => noSpace(v) && v.length <= 1024 };

const WORKLOAD_TYPES = ['unix', 'k8s', 'systemd'];
const NODE_TYPES = ['k8s_psat', 'x509pop', 'join_token'];
const KNOWN_TYPES = [...WORKLOAD_TYPES, ...NODE_TYPES];

/**
 * Selectors that bind a caller to something it cannot change about itself and that not every local
 * process shares. Not binding: unix:path and unix:sha256 (any user can run the binary, or code can
 * run inside it), supplementary groups (shared by many users), systemd:fragment_path (every user's
 * manager runs user@.service), k8s:node-name (every pod on the node), k8s:container-image (any pod
 * may run any image).
 */
const BINDING = new Set(['unix:uid', 'unix:gid', 'unix:user', 'unix:group', 'systemd:id', 'k8s:ns', 'k8s:sa', 'k8s:pod-uid', 'k8s:pod-name', 'k8s:pod-label', 'k8s:container-name']);

export const BINDING_SELECTORS: readonly string[] = [...BINDING];

const invalid = (selector: string, why: string): CairnError =>
  new CairnError('invalid_selector', `selector ${JSON.stringify(selector)}: ${why}`, { details: { selector } });

function split(selector: string): { type: string; rest: string } {
  const i = selector.indexOf(':');
  return { type: selector.slice(0, i), rest: selector.slice(i + 1) };
}

/** Checks one selector of a known type; returns its `type:sub` kind (e.g. `unix:uid`). */
function checkKnown(selector: string, type: string, rest: string): string {
  if (type === 'join_token') {
    if (!JOIN_TOKEN.valid(rest)) throw invalid(selector, `expected join_token:<label>, ${JOIN_TOKEN.expected}`);
    return 'join_token';
  }
  const forms = FORMS[type]!;
  const i = rest.indexOf(':');
  const sub = i < 0 ? rest : rest.slice(0, i);
  const form = forms[sub];
  if (!form) {
    throw invalid(selector, `${type} has no selector "${sub}"; expected ${type}:<kind>:<value> with kind one of ${Object.keys(forms).join(', ')}`);
  }
  if (i < 0 || !form.valid(rest.slice(i + 1))) throw invalid(selector, `expected ${type}:${sub}:<value> where the value is ${form.expected}`);
  return `${type}:${sub}`;
}

export interface SelectorCheckOptions {
  /** Store selectors of a type Cairn does not know (they never match what Cairn's attestors produce). */
  readonly allowUnknownTypes?: boolean | undefined;
}

/**
 * Refuses selectors that cannot be what an attestor produces, selectors of the wrong side (node
 * selectors on a workload entry, workload selectors on a node alias or token), and workload entries
 * that any local user could match (only path, hash or shared-group selectors).
 */
export function checkSelectors(selectors: readonly string[], use: SelectorUse, options: SelectorCheckOptions = {}): void {
  const allowed = use === 'workload' ? WORKLOAD_TYPES : use === 'node-alias' ? NODE_TYPES : ['join_token'];
  let binding = false;
  let unknown = false;
  for (const selector of selectors) {
    const { type, rest } = split(selector);
    if (!KNOWN_TYPES.includes(type)) {
      if (!options.allowUnknownTypes) {
        throw invalid(selector, `unknown selector type "${type}": Cairn produces ${WORKLOAD_TYPES.join(', ')} (workloads) and ${NODE_TYPES.join(', ')} (nodes); to store another type anyway set allowUnknownSelectorTypes (CLI --allow-unknown-selector-type)`);
      }
      unknown = true;
      continue;
    }
    if (!allowed.includes(type)) throw invalid(selector, wrongSide(type, use));
    const kind = checkKnown(selector, type, rest);
    if (BINDING.has(kind)) binding = true;
  }
  if (use === 'workload' && !binding && !unknown) {
    throw new CairnError(
      'weak_selectors',
      `selectors ${selectors.join(' ')} let any local process match: add one that binds the caller to something it cannot change about itself (${BINDING_SELECTORS.join(', ')}); unix:path and unix:sha256 name a binary any user can run, or whose process other code can run inside`,
      { details: { selectors: [...selectors] } },
    );
  }
}

function wrongSide(type: string, use: SelectorUse): string {
  if (use === 'workload') return `${type} selectors describe nodes: they belong on a node alias (parent spiffe://<td>/cairn/server), not on a workload entry`;
  if (NODE_TYPES.includes(type)) return `${type} selectors are what the ${type} attestor vouches for; a token's node selectors must be join_token:<label>`;
  return `${type} selectors describe workloads: a ${use === 'token' ? 'token' : 'node alias'} needs node selectors (${use === 'token' ? 'join_token:<label>' : NODE_TYPES.join(', ')})`;
}

/**
 * A template placeholder `{type:key}` must name a workload selector Cairn's attestors produce
 * (`unix:uid`, `k8s:ns`, …), or it could never render. Returns whether it binds the caller (see BINDING).
 */
export function checkPlaceholder(name: string, options: SelectorCheckOptions = {}): boolean {
  const { type, rest: sub } = split(name);
  if (!KNOWN_TYPES.includes(type)) {
    if (options.allowUnknownTypes) return false;
    throw new CairnError('invalid_id_template', `placeholder {${name}}: unknown selector type "${type}" (workload selectors are ${WORKLOAD_TYPES.join(', ')})`);
  }
  if (!WORKLOAD_TYPES.includes(type)) throw new CairnError('invalid_id_template', `placeholder {${name}}: ${type} selectors describe nodes, not the callers a template serves`);
  if (!FORMS[type]![sub]) throw new CairnError('invalid_id_template', `placeholder {${name}}: ${type} has no selector "${sub}" (one of ${Object.keys(FORMS[type]!).join(', ')})`);
  return BINDING.has(name);
}

/** Whether a selector binds the caller (its `type:kind` is in BINDING). */
export function isBindingSelector(selector: string): boolean {
  const { type, rest } = split(selector);
  const i = rest.indexOf(':');
  return BINDING.has(`${type}:${i < 0 ? rest : rest.slice(0, i)}`);
}
