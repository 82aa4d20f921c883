import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { packageRoot } from '../../lib/paths.js';
import { storeKind } from '../support/db.js';
import { freePort, runCairnAsync, spawnCairn, type Spawned } from '../support/processes.js';
import { WorkloadApiClient } from '../../workload-api/client.js';
import { fetchPinnedAuthority, requestJson } from '../../lib/tls-client.js';

const UNITS = join(packageRoot(), 'deploy/systemd');

/** The [Service] settings of a unit file, repeated keys kept in order. */
function serviceSettings(unit: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  let section = '';
  for (const raw of readFileSync(join(UNITS, unit), 'utf8').split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const header = /^\[(.+)\]$/.exec(line);
    if (header) section = header[1]!;
    else if (section === 'Service') {
      const i = line.indexOf('=');
      const key = line.slice(0, i);
      out.set(key, [...(out.get(key) ?? []), line.slice(i + 1)]);
    }
  }
  return out;
}

/** ExecStart's node arguments, with the install paths mapped onto this checkout and a scratch dir. */
function execArgs(unit: string, paths: Record<string, string>, key = 'ExecStart'): string[] {
  const exec = serviceSettings(unit).get(key)![0]!;
  let line = exec.replace('/opt/cairn', packageRoot());
  for (const [from, to] of Object.entries(paths)) line = line.split(from).join(to);
  const args = line.split(/\s+/);
  expect(args[0]).toBe('/usr/bin/node');
  expect(args[1]).toBe(join(packageRoot(), 'dist/cli/main.js'));
  return args.slice(2);
}

function environment(unit: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const value of serviceSettings(unit).get('Environment') ?? []) {
    for (const pair of value.split(/\s+(?=[A-Z_]+=)/)) {
      const i = pair.indexOf('=');
      env[pair.slice(0, i)] = pair.slice(i + 1);
    }
  }
  return env;
}

describe('deploy/systemd units', () => {
  it('pass systemd-analyze verify', () => {
    expect(() => execFileSync('systemd-analyze', ['verify', join(UNITS, 'cairn-ca.service'), join(UNITS, 'cairn-agent.service')], { stdio: 'pipe', timeout: 30_000 })).not.toThrow();
  });

  it.each(['cairn-ca.service', 'cairn-agent.service'])('%s is hardened and keeps its state in a state directory', (unit) => {
    const s = serviceSettings(unit);
    const hardening: [string, string][] = [['NoNewPrivileges', 'yes'], ['ProtectSystem', 'strict'], ['PrivateTmp', 'yes'], ['ProtectKernelModules', 'yes'], ['RestrictNamespaces', 'yes'], ['UMask', '0077']];
    for (const [key, value] of hardening) {
      expect(s.get(key), `${unit} ${key}`).toEqual([value]);
    }
    expect(s.get('StateDirectory')?.[0]).toMatch(/^cairn-/);
    expect(s.get('ExecStart')?.[0]).toContain('--data-dir ${STATE_DIRECTORY}');
  });

  it.each(['cairn-ca.service', 'cairn-agent.service'])('%s reports a start that never becomes healthy: a health check after start, no restart on configuration errors', (unit) => {
    const s = serviceSettings(unit);
    expect(s.get('ExecStartPost')?.[0]).toMatch(/dist\/cli\/main\.js (ca|agent) healthcheck .*--wait 60s$/);
    expect(Number(s.get('TimeoutStartSec')?.[0])).toBeGreaterThan(60);
    expect(s.get('Restart')).toEqual(['on-failure']);
    expect(s.get('RestartPreventExitStatus')).toEqual(['2']);
  });

  it('cairn-ca.service serves admin routes on the TLS port only: plain HTTP (on all addresses) carries the public documents alone', () => {
    const exec = serviceSettings('cairn-ca.service').get('ExecStart')![0]!.split(/\s+/);
    const flag = (name: string) => exec[exec.indexOf(name) + 1];
    expect(flag('--listen')).toBe('0.0.0.0:8080');
    expect(flag('--plain-admin')).toBe('off');
    expect(flag('--tls-listen')).toBe('0.0.0.0:8443');
    // the unit's comments tell the admin where the pin is and to use https
    const text = readFileSync(join(UNITS, 'cairn-ca.service'), 'utf8');
    expect(text).toMatch(/journalctl -u cairn-ca \| grep -o 'TLS pin sha256:/);
    expect(text).toMatch(/--server https:\/\/\S+:8443 --ca-pin/);
  });
});

describe.runIf(storeKind() === 'embedded')('the units\' command lines, run as written (VM bootstrap: one token, then restarts without it)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cairn-systemd-'));
  const running: Spawned[] = [];
  afterAll(async () => {
    for (const p of running.reverse()) await p.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('the CA starts, the agent attests with the token file, and after the file is deleted a restart reuses its SVID', async () => {
    const [http, tls] = [await freePort(), await freePort()];
    const caArgs = execArgs('cairn-ca.service', { '${STATE_DIRECTORY}': join(dir, 'ca'), '0.0.0.0:8080': `127.0.0.1:${http}`, '0.0.0.0:8443': `127.0.0.1:${tls}` });
    const ca = spawnCairn(caArgs, { ...environment('cairn-ca.service'), DATABASE_URL: undefined, CAIRN_ADMIN_TOKEN: undefined, CAIRN_SERVER: undefined });
    running.push(ca);
    await ca.waitFor(/TLS pin sha256:[A-Za-z0-9_-]{43}/, 120_000);
    // ExecStartPost as written: `systemctl start` returns once the CA is ready (/readyz on plain HTTP)
    const caReady = await runCairnAsync(execArgs('cairn-ca.service', { '127.0.0.1:8080': `127.0.0.1:${http}` }, 'ExecStartPost'));
    expect(caReady).toMatchObject({ status: 0, stderr: '' });
    // the admin API over TLS only, trusted through the pin the CA printed (what the unit's comment says to do)
    const pin = /TLS pin (sha256:[A-Za-z0-9_-]{43})/.exec(ca.stdout())![1]!; // its banner, on stdout
    const tlsUrl = `https://127.0.0.1:${tls}`;
    const authority = await fetchPinnedAuthority(tlsUrl, pin);
    const adminToken = readFileSync(join(dir, 'ca', 'admin-token'), 'utf8').trim();
    const admin = async (path: string, body?: unknown) => (await requestJson<any>(body === undefined ? 'GET' : 'POST', tlsUrl + path, body, { ca: authority, bearer: adminToken })).body;
    const plain = await fetch(`http://127.0.0.1:${http}/v1/trust-domains`, { headers: { authorization: `Bearer ${adminToken}` } });
    expect(plain.status).toBe(403);
    expect((await plain.json()).code).toBe('tls_required');
    await admin('/v1/trust-domains', { name: 'vm.test' });
    const { token, spiffeId } = await admin('/v1/tokens', { trustDomain: 'vm.test' });
    await admin('/v1/entries', { spiffeId: 'spiffe://vm.test/app', parentId: spiffeId, selectors: [`unix:uid:${process.getuid!()}`] });
    expect((await fetch(`http://127.0.0.1:${http}/td/vm.test/bundle`)).status).toBe(200); // public documents stay on plain HTTP
    const tokenFile = join(dir, 'join-token');
    writeFileSync(tokenFile, token + '\n', { mode: 0o600 });
    const socket = join(dir, 'run', 'agent.sock');
    const agentArgs = execArgs('cairn-agent.service', { '${STATE_DIRECTORY}': join(dir, 'agent'), '/run/cairn/agent.sock': socket, '/etc/cairn/join-token': tokenFile });
    const agentEnv = environment('cairn-agent.service');
    expect(agentEnv.NODE_OPTIONS).toBe('--max-semi-space-size=1');
    expect(agentArgs.join(' ')).toContain('--workload-attestor systemd'); // callers get systemd:id selectors on VMs

    const fetchId = async (): Promise<string> => {
      const client = new WorkloadApiClient(`unix://${socket}`);
      try {
        for (;;) {
          try {
            return (await client.fetchX509Context()).svids[0]!.spiffeId;
          } catch (err) {
            if ((err as { code?: string }).code !== 'unavailable') throw err;
            await new Promise((r) => setTimeout(r, 200));
          }
        }
      } finally {
        client.close();
      }
    };

    const first = spawnCairn(agentArgs, agentEnv);
    running.push(first);
    const agentPost = execArgs('cairn-agent.service', { '/run/cairn/agent.sock': socket }, 'ExecStartPost');
    const agentReady = await runCairnAsync(agentPost, agentEnv); // waits for the agent to serve
    expect(agentReady).toMatchObject({ status: 0, stderr: '' });
    expect(await fetchId()).toBe('spiffe://vm.test/app');
    expect(await first.stop('SIGTERM')).toBe(0);
    expect(existsSync(socket)).toBe(false);
    // with no agent serving, the same check fails with one line (its wait shortened here)
    const noAgent = await runCairnAsync(agentPost.map((a) => (a === '60s' ? '2s' : a)), agentEnv);
    expect(noAgent.status).toBe(1);
    expect(noAgent.stderr).toMatch(/^error: no agent answers on .*agent\.sock .*\n$/);

    rmSync(tokenFile); // a used token is useless anyway; the persisted SVID is what restarts rely on
    const second = spawnCairn(agentArgs, agentEnv);
    running.push(second);
    await second.waitFor(/serving the Workload API; export SPIFFE_ENDPOINT_SOCKET=/, 120_000); // its banner (the log line says less)
    expect(second.stdout()).toContain(spiffeId); // the banner, on stdout
    expect(await fetchId()).toBe('spiffe://vm.test/app');
  }, 300_000);
});
