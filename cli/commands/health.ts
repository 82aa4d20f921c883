import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { checkHealth } from '../../workload-api/health-client.js';
import { parseDuration } from '../../lib/duration.js';
import type { Parsed } from '../flags.js';
import type { AGENT_HEALTHCHECK_FLAGS } from '../specs/agent.js';
import type { CA_HEALTHCHECK_FLAGS } from '../specs/ca.js';
import { dataDirOf, DEFAULT_HTTP_PORT, recordedEndpoints } from '../client.js';

/**
 * `cairn agent healthcheck` and `cairn ca healthcheck`, like `spire-agent healthcheck`: exit 0 when
 * the process serves, else one `error:` line saying why and exit 1. `--wait 60s` keeps asking until
 * it serves or the time is up (for systemd's ExecStartPost, so `systemctl start` reports a start
 * that never became healthy). Kept apart from the commands that start processes: probes run this
 * every few seconds and should load nothing else.
 */
export class HealthcheckFailed extends Error {
  override readonly name = 'HealthcheckFailed';
}

/** --socket (or CAIRN_AGENT_SOCKET as `agent start`, or SPIFFE_ENDPOINT_SOCKET), endpoints.json, else agent start's default. */
function agentSocketOf(given: string | undefined, dataDirFlag: string | undefined): string {
  if (given) return /^[a-z][a-z0-9+.-]*:/i.test(given) ? given : resolve(given);
  const dataDir = dataDirOf(dataDirFlag);
  return recordedEndpoints(dataDir).socket ?? join(dataDir, 'agent', 'sockets', 'workload.sock');
}

/** Asks `once` until it answers undefined (healthy) or the wait is over; throws the last reason. */
async function until(waitMs: number, once: () => Promise<string | undefined>): Promise<void> {
  const deadline = Date.now() + waitMs;
  for (;;) {
    const problem = await once();
    if (problem === undefined) return;
    if (Date.now() + 500 > deadline) throw new HealthcheckFailed(problem);
    await sleep(500);
  }
}

/** --wait, already checked by the flag table. */
const waitMsOf = (wait: string | undefined): number => (wait ? parseDuration(wait) * 1000 : 0);

export async function agentHealthcheckCommand({ values }: Parsed<typeof AGENT_HEALTHCHECK_FLAGS>): Promise<void> {
  const address = agentSocketOf(values.socket, values['data-dir']);
  const waitMs = waitMsOf(values.wait);
  const shown = address.replace(/^unix:\/\//, '');
  await until(waitMs, async () => {
    try {
      const { status, reason } = await checkHealth(address, { timeoutMs: 5000 });
      if (status === 'SERVING') return undefined;
      return `the agent on ${shown} is not serving: ${reason ?? status}`;
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code === 'invalid_argument') throw new HealthcheckFailed((err as Error).message);
      return code === 'unavailable' ? `no agent answers on ${shown} (${(err as Error).message})` : `the agent on ${shown} failed the health check: ${(err as Error).message}`;
    }
  });
  process.stdout.write(`the agent on ${shown} is healthy: synced with the CA, holding a valid agent SVID, serving the Workload API\n`);
}

export async function caHealthcheckCommand({ values }: Parsed<typeof CA_HEALTHCHECK_FLAGS>): Promise<void> {
  // /readyz is public on the plain listener (also with --plain-admin off): no token, no TLS trust needed.
  const server = (values.server ?? recordedEndpoints(dataDirOf(values['data-dir'])).caUrl ?? `http://127.0.0.1:${DEFAULT_HTTP_PORT}`).replace(/\/+$/, '');
  const waitMs = waitMsOf(values.wait);
  await until(waitMs, async () => {
    let res: Response;
    try {
      res = await fetch(`${server}/readyz`, { signal: AbortSignal.timeout(5000) });
    } catch (err) {
      const cause = (err as Error & { cause?: { code?: string; message?: string } }).cause;
      return `cannot reach the CA at ${server}: ${cause?.code ?? cause?.message ?? (err as Error).message}`;
    }
    const body = (await res.json().catch(() => ({}))) as { status?: string; reason?: string };
    if (res.status === 200) return undefined;
    return `the CA at ${server} is not ready: ${body.reason ?? `/readyz answered ${res.status}`}`;
  });
  process.stdout.write(`the CA at ${server} is ready\n`);
}
