import { command, flags } from '../flags.js';
import { JSON_OUTPUT } from './common.js';

export const BOOTSTRAP_FLAGS = flags({
  token: { type: 'string', value: 'TOKEN', env: ['CAIRN_TOKEN'], required: true, description: 'the workload credential from cairn token create --spiffe-id' },
  write: { type: 'string', value: 'DIR', required: true, complete: 'dir', description: 'where to write svid.pem, svid.key (0600), bundle.pem and federated/<td>.pem' },
  ...JSON_OUTPUT,
});

export const RENEW_FLAGS = flags({
  dir: { type: 'string', value: 'DIR', required: true, complete: 'dir', description: 'the directory cairn bootstrap wrote' },
  watch: { type: 'boolean', default: false, description: 'keep renewing at about half-life (±10%) until stopped' },
  exec: { type: 'string', value: 'CMD', description: 'a shell command to run after each renewal (e.g. a reload)' },
  ...JSON_OUTPUT,
});

const device = () => import('../commands/enrollment.js');

export const bootstrap = command({
  name: 'bootstrap',
  summary: 'agentless device: redeem a workload credential once for its first SVID',
  flags: BOOTSTRAP_FLAGS,
  examples: ['cairn bootstrap --token "$(cat cred)" --write /etc/spiffe'],
  run: async (args) => (await device()).bootstrapCommand(args),
});

export const renew = command({
  name: 'renew',
  summary: "agentless device: renew the SVID over mTLS with the one it holds",
  flags: RENEW_FLAGS,
  examples: ["cairn renew --dir /etc/spiffe --watch --exec 'systemctl reload nginx'"],
  run: async (args) => (await device()).renewCommand(args),
});
