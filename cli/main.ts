#!/usr/bin/env node
import { CairnError } from '../lib/errors.js';
import { ConfigError, UsageError } from './args.js';
import { CliError } from './client.js';

type Command = (argv: string[]) => Promise<void>;

/**
 * Commands load on demand: `cairn agent start` on a node should not pay (in memory and start-up)
 * for the CA's web server, database drivers and embedded PostgreSQL.
 */
const COMMANDS: Record<string, () => Promise<Command>> = {
  ca: async () => async (argv) =>
    argv[0] === 'pin' ? (await import('./commands/attestor.js')).caPinCommand(argv)
    : argv[0] === 'healthcheck' ? (await import('./commands/health.js')).caHealthcheckCommand(argv.slice(1))
    : (await import('./commands/ca.js')).caCommand(argv),
  migrate: async () => (await import('./commands/ca.js')).migrateCommand,
  attestor: async () => (await import('./commands/attestor.js')).attestorCommand,
  up: async () => (await import('./commands/ca.js')).upCommand,
  'trust-domain': async () => (await import('./commands/trust-domain.js')).trustDomainCommand,
  x509: async () => (await import('./commands/mint.js')).x509Command,
  // Minting and the inventory talk to the CA's admin API; fetch/watch/validate to the local Workload API.
  jwt: async () => async (argv) => (argv[0] === 'mint' ? (await import('./commands/mint.js')).jwtCommand(argv) : (await import('./commands/workload.js')).jwtWorkloadCommand(argv)),
  svid: async () => async (argv) => (argv[0] === 'list' ? (await import('./commands/mint.js')).svidCommand(argv) : (await import('./commands/workload.js')).svidWorkloadCommand(argv)),
  token: async () => (await import('./commands/enrollment.js')).tokenCommand,
  entry: async () => (await import('./commands/enrollment.js')).entryCommand,
  // The health check loads no agent code: probes run it every few seconds.
  agent: async () => async (argv) => (argv[0] === 'healthcheck' ? (await import('./commands/health.js')).agentHealthcheckCommand(argv.slice(1)) : (await import('./commands/agent.js')).agentCommand(argv)),
  bootstrap: async () => (await import('./commands/enrollment.js')).bootstrapCommand,
  renew: async () => (await import('./commands/enrollment.js')).renewCommand,
  admin: async () => (await import('./commands/admin.js')).adminCommand,
};

async function usage(): Promise<string> {
  const [ca, td, mint, enrollment, agent, workload, attestor, admin] = await Promise.all([
    import('./commands/ca.js'),
    import('./commands/trust-domain.js'),
    import('./commands/mint.js'),
    import('./commands/enrollment.js'),
    import('./commands/agent.js'),
    import('./commands/workload.js'),
    import('./commands/attestor.js'),
    import('./commands/admin.js'),
  ]);
  return `cairn — a SPIFFE identity authority

${ca.CA_USAGE}
${td.TRUST_DOMAIN_USAGE}
${mint.MINT_USAGE}
${enrollment.ENROLLMENT_USAGE}
${agent.AGENT_USAGE}
${workload.WORKLOAD_USAGE}
${attestor.ATTESTOR_USAGE}
${admin.ADMIN_USAGE}

Common flags: --server URL (or CAIRN_SERVER), --data-dir DIR (or CAIRN_DATA_DIR, default ./.cairn), --json
Admin verbs trust an https --server by --ca-pin PIN (or CAIRN_CA_PIN) or --ca-file FILE (or CAIRN_CA_FILE), else the
caPin cairn up wrote to <data-dir>/endpoints.json; plain http:// only to loopback.
The admin token comes from CAIRN_ADMIN_TOKEN, CAIRN_ADMIN_TOKEN_FILE or <data-dir>/admin-token; with --svid-dir DIR or
--svid-from-socket an admin SVID is the TLS client certificate instead, and no token is sent.`;
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (!command || command === 'help' || command === '--help' || command === '-h') {
    process.stdout.write((await usage()) + '\n');
    return command ? 0 : 2;
  }
  // `cairn ca start --help` must explain, not start a CA.
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write((await usage()) + '\n');
    return 0;
  }
  const load = COMMANDS[command];
  if (!load) {
    process.stderr.write(`unknown command "${command}"\n\n${await usage()}\n`);
    return 2;
  }
  try {
    await (await load())(rest);
    return 0;
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`error: ${err.message}\n`);
      return 2;
    }
    if (err instanceof UsageError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`${(err as Error).message}\n`);
      return 2;
    }
    // Coded errors (the Workload API client's too, matched by name so it loads only when used).
    if (err instanceof CliError || err instanceof CairnError || (err as Error).name === 'WorkloadApiError') {
      process.stderr.write(`error: ${(err as CliError).code}: ${(err as Error).message}\n`);
      return 1;
    }
    process.stderr.write(`error: ${(err as Error).message ?? String(err)}\n`);
    return 1;
  }
}

process.exitCode = await main(process.argv.slice(2));
// Everything a command opened is closed by now; should a stray handle still hold the event loop, the
// process ends anyway rather than hang with its work done (a supervisor would see it as running).
setTimeout(() => process.exit(), 5000).unref();
