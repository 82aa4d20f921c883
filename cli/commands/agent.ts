import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startAgent } from '../../node-agent/main.js';
import { parse, UsageError } from '../args.js';
import { dataDirOf } from '../client.js';
import { printResult, say, table } from '../output.js';
import { agentAdminCommand } from './enrollment.js';

export const AGENT_USAGE = `cairn agent start [--data-dir DIR] [--socket PATH] [--join-token T | --join-token-file F]
cairn agent unregistered [--data-dir DIR]     (callers that matched no entry: discovery mode)`;

/** Resolves when SIGINT or SIGTERM arrives. */
export function untilSignal(): Promise<string> {
  return new Promise((resolve) => {
    const done = (sig: string) => () => resolve(sig);
    process.once('SIGINT', done('SIGINT'));
    process.once('SIGTERM', done('SIGTERM'));
  });
}

/**
 * The join token, from the flag, a file or CAIRN_JOIN_TOKEN. A file is read only if the agent needs
 * it (no valid persisted SVID), so it may be deleted after the first start.
 */
export function joinTokenOf(flag: string | undefined, file: string | undefined): string | (() => Promise<string>) | undefined {
  if (flag) return flag;
  if (file) {
    return async () => {
      try {
        return readFileSync(file, 'utf8').trim();
      } catch (err) {
        throw new UsageError(`cannot read the join token file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
      }
    };
  }
  return process.env.CAIRN_JOIN_TOKEN;
}

export async function agentCommand(argv: string[]): Promise<void> {
  const [verb] = argv;
  if (verb === 'start') {
    const { values } = parse(argv.slice(1), { socket: { type: 'string' }, 'join-token': { type: 'string' }, 'join-token-file': { type: 'string' } });
    const dataDir = join(dataDirOf(values['data-dir']), 'agent');
    const handle = await startAgent({ dataDir, socketPath: values.socket ?? process.env.CAIRN_AGENT_SOCKET, joinToken: joinTokenOf(values['join-token'], values['join-token-file']) });
    say(`Cairn agent ${handle.spiffeId} serving the Workload API; export SPIFFE_ENDPOINT_SOCKET=unix://${handle.socketPath}`);
    await untilSignal();
    await handle.close();
    return;
  }
  if (verb === 'unregistered') {
    const { values } = parse(argv.slice(1), {});
    const file = join(dataDirOf(values['data-dir']), 'agent', 'unregistered.json');
    const list = existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as { selectors: string[]; count: number; lastSeen: string }[]) : [];
    printResult(values.json, list, () => table([['SELECTORS', 'CALLS', 'LAST SEEN'], ...list.map((c) => [c.selectors.join(' '), String(c.count), c.lastSeen])]));
    return;
  }
  if (verb === 'list' || verb === 'ban' || verb === 'unban' || verb === 'evict') return agentAdminCommand(argv);
  throw new UsageError(AGENT_USAGE);
}
