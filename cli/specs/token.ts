import { CHECKS, command, flags, group } from '../flags.js';
import { ADMIN_FLAGS } from './common.js';

export const TOKEN_CREATE_FLAGS = flags({
  'trust-domain': { type: 'string', value: 'TD', required: true, check: CHECKS.trustDomain, description: 'the trust domain the token enrolls into' },
  ttl: { type: 'string', value: 'DURATION', check: CHECKS.duration, description: 'how long the token can be redeemed, 30s to 24h (default 10m)' },
  'agent-id': { type: 'string', value: 'ID', check: CHECKS.spiffeId, description: 'the SPIFFE ID the agent gets (default spiffe://<td>/cairn/agent/join_token/<token id>)' },
  'spiffe-id': { type: 'string', value: 'ID', check: CHECKS.spiffeId, description: 'make a workload credential for an agentless device with this SPIFFE ID instead of a join token' },
  selector: { type: 'string', multiple: true, value: 'join_token:LABEL', check: CHECKS.selector, description: 'a node selector the agent gets, matched by node aliases (join_token:<label>)' },
  'allow-unknown-selector-type': { type: 'boolean', description: 'store a selector of a type Cairn does not know (otherwise refused as invalid_selector)' },
  'federates-with': { type: 'string', multiple: true, value: 'TD', check: CHECKS.trustDomain, description: 'with --spiffe-id: a foreign trust domain whose bundle the device gets (federated/<td>.pem) at bootstrap and every renewal' },
  ...ADMIN_FLAGS,
});

export const tokenGroup = group({
  name: 'token',
  summary: 'one-time tokens: join tokens for agents, workload credentials for devices',
  commands: [
    command({
      name: 'create',
      summary: 'print a single-use token alone on stdout',
      flags: TOKEN_CREATE_FLAGS,
      apiFields: { trustDomain: 'trust-domain', ttlSeconds: 'ttl', agentId: 'agent-id', spiffeId: 'spiffe-id', selectors: 'selector', selector: 'selector', allowUnknownSelectorTypes: 'allow-unknown-selector-type', federatesWith: 'federates-with' },
      examples: [
        'cairn token create --trust-domain example.org > join-token',
        'cairn token create --trust-domain example.org --spiffe-id spiffe://example.org/device-type/thermostat/ins/6f1c > cred',
        'cairn token create --trust-domain example.org --spiffe-id spiffe://example.org/gateway --federates-with partner.org > cred',
      ],
      run: async (args) => (await import('../commands/enrollment.js')).tokenCreate(args),
    }),
  ],
});
