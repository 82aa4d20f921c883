import { parseDuration } from '../../lib/duration.js';
import { CHECKS, command, flags, group } from '../flags.js';
import { listenAddress } from '../settings.js';
import { ADMIN_FLAGS, CONFIG_FLAG, DATA_DIR, HEALTHCHECK_WAIT, JSON_OUTPUT, LOG_FLAGS, PAGING } from './common.js';

/** Where the DaemonSet in deploy/kubernetes projects the agent's token (audience cairn-ca). */
export const DEFAULT_PSAT_TOKEN_FILE = '/var/run/secrets/tokens/cairn-agent';

export const AGENT_START_FLAGS = flags({
  ...DATA_DIR,
  socket: { type: 'string', value: 'PATH', env: ['CAIRN_AGENT_SOCKET'], complete: 'file', description: 'where to serve the Workload API (default <data-dir>/agent/sockets/workload.sock)' },
  'join-token': { type: 'string', value: 'TOKEN', description: 'a join token from cairn token create (also CAIRN_JOIN_TOKEN); used only without a valid persisted SVID' },
  'join-token-file': { type: 'string', value: 'FILE', complete: 'file', description: 'read the join token from FILE, only when it is needed' },
  attestor: {
    type: 'string',
    choices: ['join_token', 'k8s_psat', 'x509pop'],
    env: ['CAIRN_ATTESTOR'],
    default: 'join_token',
    description: 'how the agent proves its node: a join token, a Kubernetes projected token, a device certificate',
  },
  'trust-domain': { type: 'string', value: 'TD', env: ['CAIRN_TRUST_DOMAIN'], check: CHECKS.trustDomain, description: 'the trust domain to attest to (k8s_psat, x509pop)' },
  cluster: { type: 'string', value: 'NAME', env: ['CAIRN_CLUSTER'], description: 'the cluster name configured with cairn attestor k8s-psat add (k8s_psat)' },
  'ca-url': { type: 'string', value: 'URL', env: ['CAIRN_CA_URL'], check: CHECKS.url, description: "the CA's TLS URL, from cairn ca pin (k8s_psat, x509pop)" },
  'ca-pin': { type: 'string', value: 'PIN', env: ['CAIRN_CA_PIN'], description: "the CA's TLS pin, from cairn ca pin (k8s_psat, x509pop)" },
  'psat-token-file': { type: 'string', value: 'FILE', default: DEFAULT_PSAT_TOKEN_FILE, complete: 'file', description: 'the projected service-account token (k8s_psat)' },
  'x509pop-cert': { type: 'string', value: 'PEM', complete: 'file', description: "the device certificate chain, leaf first (x509pop)" },
  'x509pop-key': { type: 'string', value: 'PEM', complete: 'file', description: "the device certificate's private key (x509pop)" },
  'workload-attestor': {
    type: 'string',
    multiple: true,
    choices: ['unix', 'k8s', 'systemd'],
    description: "add a workload attestor; unix always runs, k8s asks the kubelet for the caller's pod, systemd names its unit",
  },
  'kubelet-url': { type: 'string', value: 'URL', env: ['CAIRN_KUBELET_URL'], check: CHECKS.url, description: "the kubelet's authenticated API, https://<node-ip>:10250 (k8s)" },
  'kubelet-token-file': {
    type: 'string',
    value: 'FILE',
    default: '/var/run/secrets/kubernetes.io/serviceaccount/token',
    complete: 'file',
    description: 'the bearer token for the kubelet (k8s)',
  },
  'kubelet-ca-file': {
    type: 'string',
    value: 'FILE',
    complete: 'file',
    description: "the CA that signs the kubelet's serving certificate (k8s; default: the service account's ca.crt, the cluster CA)",
  },
  'kubelet-skip-verify': { type: 'boolean', default: false, description: "do not verify the kubelet's serving certificate (knowingly: self-signed kubelets)" },
  'workload-idle-timeout': {
    type: 'string',
    value: 'DURATION',
    check: (v) => {
      try {
        parseDuration(v);
      } catch {
        throw new Error(`must be a duration like 30s, 5m or 0 (never) (got "${v}")`);
      }
      return v;
    },
    description: 'close a Workload API connection that holds no stream for this long; 0 never (default 30s)',
  },
  'workload-max-connections-per-uid': {
    type: 'string',
    value: 'N',
    check: (v) => {
      if (!/^[1-9]\d{0,6}$/.test(v)) throw new Error(`must be a whole number from 1 to 9999999 (got "${v}")`);
      return v;
    },
    description: 'Workload API connections one uid may hold open; extras are refused before any /proc read (default 64)',
  },
  'metrics-listen': {
    type: 'string',
    value: 'HOST:PORT',
    env: ['CAIRN_AGENT_METRICS_LISTEN'],
    check: (v, where) => (listenAddress(v, where), v),
    description: 'serve Prometheus metrics (GET /metrics, no credential) here, e.g. 127.0.0.1:9465 (default: none)',
  },
  ...LOG_FLAGS,
  ...CONFIG_FLAG,
});

export const AGENT_UNREGISTERED_FLAGS = flags({ ...DATA_DIR, ...JSON_OUTPUT });
export const AGENT_HEALTHCHECK_FLAGS = flags({
  socket: {
    type: 'string',
    value: 'PATH',
    env: ['CAIRN_AGENT_SOCKET', 'SPIFFE_ENDPOINT_SOCKET'],
    complete: 'file',
    description: "the agent's Workload API socket, a path or unix:///PATH (default: the socket in <data-dir>/endpoints.json, else agent start's)",
  },
  ...HEALTHCHECK_WAIT,
  ...DATA_DIR,
});
export const AGENT_LIST_FLAGS = flags({
  'trust-domain': { type: 'string', value: 'TD', check: CHECKS.trustDomain, description: 'only agents and devices of this trust domain' },
  ...PAGING,
  ...ADMIN_FLAGS,
});
export const AGENT_ACTION_FLAGS = ADMIN_FLAGS;

/** What a ban names when it is not a SPIFFE ID: a device certificate or a Kubernetes node, in a trust domain. */
const BAN_TARGET = flags({
  'trust-domain': { type: 'string', value: 'TD', check: CHECKS.trustDomain, description: 'the trust domain of the device or node (with --fingerprint or --node-uid)' },
  fingerprint: { type: 'string', value: 'SHA1', description: "an x509pop device certificate's SHA-1 fingerprint (hex, colons allowed)" },
  'node-uid': { type: 'string', value: 'UID', description: 'a Kubernetes node UID (k8s_psat agents)' },
});
export const AGENT_BAN_FLAGS = flags({ ...BAN_TARGET, reason: { type: 'string', value: 'TEXT', description: 'why, recorded with the ban' }, ...ADMIN_FLAGS });
export const AGENT_UNBAN_FLAGS = flags({ ...BAN_TARGET, ...ADMIN_FLAGS });
export const AGENT_BANS_FLAGS = flags({
  'trust-domain': { type: 'string', value: 'TD', check: CHECKS.trustDomain, description: 'only bans of this trust domain' },
  ...PAGING,
  ...ADMIN_FLAGS,
});

const agent = () => import('../commands/agent.js');
const enrollment = () => import('../commands/enrollment.js');
const BAN_ID = { name: 'SPIFFE_ID', description: 'the agent or device to ban, by SPIFFE ID (it need not be attested); or give --trust-domain with --fingerprint or --node-uid', check: CHECKS.spiffeId } as const;
const ID = { name: 'SPIFFE_ID', description: "the agent's or device's SPIFFE ID, as cairn agent list prints it", required: true, check: CHECKS.spiffeId } as const;

export const agentGroup = group({
  name: 'agent',
  summary: 'run a node agent; check its health; list, ban, unban and evict attested agents',
  commands: [
    command({
      name: 'start',
      summary: 'run a node agent serving the Workload API on a Unix socket',
      description: `Attest to the CA (join token, k8s_psat or x509pop; or the persisted SVID while valid), sync entries,
keep workload SVIDs fresh and serve the SPIFFE Workload API until SIGINT or SIGTERM.
Flags may come from a YAML file (--config): flags on the command line win over the file, the file over the environment.`,
      flags: AGENT_START_FLAGS,
      examples: [
        'cairn agent start --join-token-file /etc/cairn/join-token --socket /run/cairn/agent.sock',
        'cairn agent start --attestor k8s_psat --trust-domain example.org --cluster prod --ca-url URL --ca-pin PIN',
        'cairn agent start --config /etc/cairn/agent.yaml',
      ],
      run: async (args) => (await agent()).agentStartCommand(args),
    }),
    command({
      name: 'healthcheck',
      summary: 'exit 0 when the agent is synced, holds a valid agent SVID and serves; else say why and exit 1',
      description: `Ask the agent's grpc.health.v1.Health service on its Workload API socket, like spire-agent healthcheck.
Exit 0 when it is synced with the CA, holds a valid agent SVID and serves the Workload API; else print one error
line saying why and exit 1. --wait keeps asking until it is healthy or the time is up (systemd's ExecStartPost).`,
      flags: AGENT_HEALTHCHECK_FLAGS,
      examples: ['cairn agent healthcheck --socket /run/cairn/agent.sock', 'cairn agent healthcheck --wait 60s'],
      run: async (args) => (await import('../commands/health.js')).agentHealthcheckCommand(args),
    }),
    command({
      name: 'unregistered',
      summary: 'callers that matched no entry, with their selectors (discovery mode)',
      flags: AGENT_UNREGISTERED_FLAGS,
      run: async (args) => (await agent()).agentUnregisteredCommand(args),
    }),
    command({ name: 'list', summary: 'attested agents and devices', flags: AGENT_LIST_FLAGS, apiFields: { trustDomain: 'trust-domain', pageSize: 'page-size', pageToken: 'page-token' }, run: async (args) => (await enrollment()).agentListCommand(args) }),
    command({
      name: 'ban',
      summary: 'refuse an agent, device certificate or Kubernetes node every attestation and SVID until unbanned',
      flags: AGENT_BAN_FLAGS,
      positionals: [BAN_ID],
      examples: ['cairn agent ban spiffe://example.org/cairn/agent/join_token/abc --reason stolen', 'cairn agent ban --trust-domain example.org --node-uid 6f1c… --reason rma'],
      run: async (args) => (await enrollment()).agentBanCommand('ban', args),
    }),
    command({ name: 'unban', summary: 'lift a ban', flags: AGENT_UNBAN_FLAGS, positionals: [{ ...BAN_ID, description: 'the banned SPIFFE ID; or give --trust-domain with --fingerprint or --node-uid' }], run: async (args) => (await enrollment()).agentBanCommand('unban', args) }),
    command({ name: 'bans', summary: 'the deny-list: banned SPIFFE IDs, device certificates and nodes', flags: AGENT_BANS_FLAGS, run: async (args) => (await enrollment()).agentBansCommand(args) }),
    command({ name: 'evict', summary: 'forget an agent or device; it must attest again (a ban stays)', flags: AGENT_ACTION_FLAGS, positionals: [ID], run: async (args) => (await enrollment()).agentActionCommand('evict', args) }),
  ],
});
