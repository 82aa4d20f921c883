import { CHECKS, command, flags, group } from '../flags.js';
import { ADMIN_FLAGS } from './common.js';

const TRUST_DOMAIN = flags({
  'trust-domain': { type: 'string', value: 'TD', required: true, check: CHECKS.trustDomain, description: 'the trust domain the attestor serves' },
});

export const PSAT_ADD_FLAGS = flags({
  ...TRUST_DOMAIN,
  cluster: { type: 'string', value: 'NAME', required: true, check: CHECKS.nonEmpty, description: 'a name for the cluster (agents give it with --cluster)' },
  allow: { type: 'string', multiple: true, value: 'NS:SA', required: true, description: "a namespace:serviceaccount whose tokens may attest (the agent's)" },
  audience: { type: 'string', value: 'AUD', description: 'the audience the projected token must carry (default cairn-ca)' },
  'token-review': { type: 'boolean', default: false, description: "validate tokens with the cluster's TokenReview API (binding-aware)" },
  'kube-credentials': { type: 'string', value: 'NAME', description: 'a credential set the CA was started with (ca start --kube-credentials; default in-cluster) (token review)' },
  'api-server': { type: 'string', value: 'URL', check: CHECKS.url, description: "the cluster's API server, for a CA outside the cluster (token review)" },
  'api-ca-file': { type: 'string', value: 'FILE', complete: 'file', description: "the API server's CA certificate, read here and sent (token review)" },
  'api-token-file': { type: 'string', value: 'FILE', complete: 'file', description: 'a bearer token for the API server, read here and sent; stored sealed (token review)' },
  issuer: { type: 'string', value: 'URL', description: "the cluster's service-account issuer (offline validation)" },
  'jwks-url': { type: 'string', value: 'URL', check: CHECKS.url, description: "the cluster's OIDC JWKS URL, fetched by the CA (offline validation)" },
  'jwks-ca-file': { type: 'string', value: 'FILE', complete: 'file', description: 'the CA certificate for the JWKS URL, read here and sent (offline validation)' },
  'jwks-file': { type: 'string', value: 'FILE', complete: 'file', description: "the cluster's JWKS read here and sent along (offline validation)" },
  ...ADMIN_FLAGS,
});

export const X509POP_ADD_FLAGS = flags({
  ...TRUST_DOMAIN,
  name: { type: 'string', value: 'NAME', required: true, check: CHECKS.nonEmpty, description: 'a name for the manufacturer CA set' },
  ...ADMIN_FLAGS,
  // Here --ca-file is the manufacturer CA; the connection to the CA trusts --ca-pin, CAIRN_CA_PIN / CAIRN_CA_FILE or endpoints.json.
  'ca-file': { type: 'string', value: 'PEM', required: true, complete: 'file', description: 'the manufacturer CA certificates devices chain to (not the admin connection\'s trust)' },
});

export const ATTESTOR_LIST_FLAGS = flags({ ...TRUST_DOMAIN, ...ADMIN_FLAGS });
export const ATTESTOR_REMOVE_FLAGS = ATTESTOR_LIST_FLAGS;

const PSAT_FIELDS = {
  allowedServiceAccounts: 'allow',
  audience: 'audience',
  kubeCredentials: 'kube-credentials',
  apiServer: 'api-server',
  apiCaCertificates: 'api-ca-file',
  apiToken: 'api-token-file',
  issuer: 'issuer',
  jwksUrl: 'jwks-url',
  jwksCaCertificates: 'jwks-ca-file',
  jwks: 'jwks-file',
};

const attestor = () => import('../commands/attestor.js');

export const attestorGroup = group({
  name: 'attestor',
  summary: 'node attestation: Kubernetes clusters (k8s-psat) and manufacturer CAs (x509pop)',
  commands: [
    group({
      name: 'k8s-psat',
      summary: 'Kubernetes clusters whose projected service-account tokens attest agents',
      commands: [
        command({
          name: 'add',
          summary: 'add or replace a cluster: --token-review, or --issuer with --jwks-url or --jwks-file',
          flags: PSAT_ADD_FLAGS,
          apiFields: PSAT_FIELDS,
          examples: [
            'cairn attestor k8s-psat add --trust-domain example.org --cluster prod --allow cairn:cairn-agent --token-review',
            'cairn attestor k8s-psat add --trust-domain example.org --cluster edge --allow cairn:cairn-agent --issuer https://oidc.edge.example --jwks-url https://oidc.edge.example/openid/v1/jwks',
          ],
          run: async (args) => (await attestor()).psatAdd(args),
        }),
      ],
    }),
    group({
      name: 'x509pop',
      summary: 'manufacturer CAs whose device certificates attest agents',
      commands: [
        command({
          name: 'add',
          summary: 'add or replace a manufacturer CA set',
          flags: X509POP_ADD_FLAGS,
          apiFields: { caCertificates: 'ca-file' },
          examples: ['cairn attestor x509pop add --trust-domain example.org --name acme --ca-file acme-manufacturing-ca.pem'],
          run: async (args) => (await attestor()).x509PopAdd(args),
        }),
      ],
    }),
    command({ name: 'list', summary: "list a trust domain's clusters and manufacturer CAs", flags: ATTESTOR_LIST_FLAGS, run: async (args) => (await attestor()).attestorList(args) }),
    command({
      name: 'remove',
      summary: 'remove a cluster or manufacturer CA set',
      flags: ATTESTOR_REMOVE_FLAGS,
      positionals: [
        { name: 'KIND', description: 'k8s-psat or x509pop', required: true, choices: ['k8s-psat', 'x509pop'] },
        { name: 'NAME', description: 'the cluster or CA set name', required: true },
      ],
      run: async (args) => (await attestor()).attestorRemove(args),
    }),
  ],
});
