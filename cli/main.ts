#!/usr/bin/env node
import { CairnError } from '../lib/errors.js';
import { UsageError } from './args.js';
import { CliError } from './client.js';
import { CA_USAGE, caCommand, upCommand } from './commands/ca.js';
import { jwtCommand, MINT_USAGE, svidCommand, x509Command } from './commands/mint.js';
import { TRUST_DOMAIN_USAGE, trustDomainCommand } from './commands/trust-domain.js';
import { bootstrapCommand, ENROLLMENT_USAGE, entryCommand, renewCommand, tokenCommand } from './commands/enrollment.js';
import { AGENT_USAGE, agentCommand } from './commands/agent.js';
import { jwtWorkloadCommand, svidWorkloadCommand, WORKLOAD_USAGE } from './commands/workload.js';
import { WorkloadApiError } from '../workload-api/client.js';

const USAGE = `cairn — a SPIFFE identity authority

${CA_USAGE}
${TRUST_DOMAIN_USAGE}
${MINT_USAGE}
${ENROLLMENT_USAGE}
${AGENT_USAGE}
${WORKLOAD_USAGE}

Common flags: --server URL (or CAIRN_SERVER), --data-dir DIR (or CAIRN_DATA_DIR, default ./.cairn), --json
The admin token comes from CAIRN_ADMIN_TOKEN or <data-dir>/admin-token.`;

const COMMANDS: Record<string, (argv: string[]) => Promise<void>> = {
  ca: caCommand,
  up: upCommand,
  'trust-domain': trustDomainCommand,
  x509: x509Command,
  // Minting and the inventory talk to the CA's admin API; fetch/watch/validate to the local Workload API.
  jwt: (argv) => (argv[0] === 'mint' ? jwtCommand(argv) : jwtWorkloadCommand(argv)),
  svid: (argv) => (argv[0] === 'list' ? svidCommand(argv) : svidWorkloadCommand(argv)),
  token: tokenCommand,
  entry: entryCommand,
  agent: agentCommand,
  bootstrap: bootstrapCommand,
  renew: renewCommand,
};

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (!command || command === 'help' || command === '--help' || command === '-h') {
    process.stdout.write(USAGE + '\n');
    return command ? 0 : 2;
  }
  const run = COMMANDS[command];
  if (!run) {
    process.stderr.write(`unknown command "${command}"\n\n${USAGE}\n`);
    return 2;
  }
  try {
    await run(rest);
    return 0;
  } catch (err) {
    if (err instanceof UsageError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`${(err as Error).message}\n`);
      return 2;
    }
    if (err instanceof CliError || err instanceof CairnError || err instanceof WorkloadApiError) {
      process.stderr.write(`error: ${err.code}: ${err.message}\n`);
      return 1;
    }
    process.stderr.write(`error: ${(err as Error).message ?? String(err)}\n`);
    return 1;
  }
}

process.exitCode = await main(process.argv.slice(2));
