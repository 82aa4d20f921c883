import { chmodSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { findUnitFile, SystemdWorkloadAttestor, unitFromCgroup, unitFromCgroupPath } from '../../../node-agent/caller/systemd-attestor.js';
import { FakeClock } from '../../support/clock.js';

describe('the systemd unit of a cgroup path, as the system manager sees it', () => {
  const cases: [string, string | undefined][] = [
    ['/system.slice/nginx.service', 'nginx.service'],
    ['/system.slice/system-getty.slice/getty@tty1.service', 'getty@tty1.service'],
    ['/system.slice/containerd.service/kubepods/pod1/abc', 'containerd.service'],
    ['/system.slice/docker-0123456789ab.scope', 'docker-0123456789ab.scope'],
    ['/init.scope', 'init.scope'],
    // user sessions: the system manager's unit, not what the user manager (delegated) created below it
    ['/user.slice/user-1000.slice/session-3.scope', 'session-3.scope'],
    ['/user.slice/user-1000.slice/user@1000.service/app.slice/app-firefox-1234.scope', 'user@1000.service'],
    ['/user.slice/user-1000.slice/user@1000.service/app.slice/sshd.service', 'user@1000.service'],
    ['/user.slice/user-1000.slice/user@1000.service/init.scope', 'user@1000.service'],
    // a delegated service's own sub-cgroups, whatever it names them
    ['/system.slice/build.service/evil.slice/sshd.service', 'build.service'],
    ['/system.slice/build.service/payments.service', 'build.service'],
    // Kubernetes with the systemd cgroup driver: the scope systemd made for the container
    ['/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0b2f3c1e_4e5f_4a6b_8c7d_9e0f1a2b3c4d.slice/cri-containerd-' + 'a'.repeat(64) + '.scope', 'cri-containerd-' + 'a'.repeat(64) + '.scope'],
    // systemd escapes cgroup names that clash with kernel files
    ['/system.slice/_cpu.service', 'cpu.service'],
    // nothing a unit can be vouched for from
    ['/', undefined],
    ['/system.slice', undefined],
    ['/user.slice/user-1000.slice', undefined],
    ['/docker/0123456789abcdef', undefined],
    ['/kubepods/burstable/pod0b2f3c1e-4e5f-4a6b-8c7d-9e0f1a2b3c4d/' + 'a'.repeat(64), undefined],
    ['/system.slice/foo.socket', undefined],
    ['/system.slice/foo.mount', undefined],
    ['/../../system.slice/nginx.service', undefined], // outside the agent's cgroup namespace
    ['/system.slice//nginx.service', undefined],
    ['system.slice/nginx.service', undefined],
    ['/system.slice/.service', undefined],
    ['/system.slice/' + 'a'.repeat(250) + '.service', undefined],
    ['/system.slice/bad name.service', undefined],
  ];
  for (const [path, unit] of cases) {
    it(`${path.length > 90 ? path.slice(0, 90) + '…' : path} → ${unit ?? 'none'}`, () => {
      expect(unitFromCgroupPath(path)).toBe(unit);
    });
  }

  it('reads the cgroup v2 line and the v1 name=systemd hierarchy, and refuses to guess when they disagree', () => {
    expect(unitFromCgroup('0::/system.slice/nginx.service\n')).toBe('nginx.service');
    const legacy = '12:pids:/system.slice/nginx.service\n3:memory:/docker/x\n1:name=systemd:/system.slice/nginx.service\n';
    expect(unitFromCgroup(legacy)).toBe('nginx.service');
    // v1 controllers are not the system manager's hierarchy: a memory cgroup says nothing
    expect(unitFromCgroup('4:memory:/system.slice/sshd.service\n0::/\n')).toBeUndefined();
    const hybrid = '9:name=systemd:/user.slice/user-1000.slice/session-3.scope\n0::/user.slice/user-1000.slice/session-3.scope\n';
    expect(unitFromCgroup(hybrid)).toBe('session-3.scope');
    expect(unitFromCgroup('1:name=systemd:/system.slice/a.service\n0::/system.slice/b.service\n')).toBeUndefined();
    // a hierarchy that names no unit leaves the other to speak
    expect(unitFromCgroup('1:name=systemd:/system.slice/a.service\n0::/\n')).toBe('a.service');
    expect(unitFromCgroup('')).toBeUndefined();
  });
});

describe('unit properties', () => {
  let root: string;
  beforeEach(() => {
    root = mkdtempSync(join(tmpdir(), 'cairn-units-'));
    for (const d of ['etc', 'lib']) mkdirSync(join(root, d));
    chmodSync(root, 0o755);
  });
  afterEach(() => rmSync(root, { recursive: true, force: true }));
  const dirs = (): string[] => [join(root, 'etc'), join(root, 'lib')];
  const isRoot = process.getuid?.() === 0;

  it.runIf(isRoot)('finds the unit file in search-path order, the template for an instance, and resolves links', () => {
    writeFileSync(join(root, 'lib', 'nginx.service'), '[Service]\n');
    writeFileSync(join(root, 'lib', 'getty@.service'), '[Service]\n');
    expect(findUnitFile('nginx.service', dirs())).toBe(join(root, 'lib', 'nginx.service'));
    expect(findUnitFile('getty@tty1.service', dirs())).toBe(join(root, 'lib', 'getty@.service'));
    writeFileSync(join(root, 'etc', 'nginx.service'), '[Service]\n');
    expect(findUnitFile('nginx.service', dirs())).toBe(join(root, 'etc', 'nginx.service')); // /etc overrides /usr/lib
    writeFileSync(join(root, 'lib', 'real-app.service'), '[Service]\n');
    symlinkSync(join(root, 'lib', 'real-app.service'), join(root, 'etc', 'app.service'));
    expect(findUnitFile('app.service', dirs())).toBe(join(root, 'lib', 'real-app.service'));
    symlinkSync('/dev/null', join(root, 'etc', 'masked.service'));
    writeFileSync(join(root, 'lib', 'masked.service'), '[Service]\n');
    expect(findUnitFile('masked.service', dirs())).toBeUndefined();
    expect(findUnitFile('absent.service', dirs())).toBeUndefined();
  });

  it.runIf(isRoot)('says nothing about a unit file another user could have written', () => {
    writeFileSync(join(root, 'lib', 'open.service'), '[Service]\n');
    chmodSync(join(root, 'lib', 'open.service'), 0o666);
    expect(findUnitFile('open.service', dirs())).toBeUndefined();
    writeFileSync(join(root, 'etc', 'dir.service'), '[Service]\n');
    chmodSync(join(root, 'etc'), 0o777);
    expect(findUnitFile('dir.service', dirs())).toBeUndefined();
  });

  it('asks the running systemd once per unit while its answer is fresh, and again after a failure', async () => {
    const clock = new FakeClock(new Date());
    const asked: string[] = [];
    let fail = true;
    const attestor = new SystemdWorkloadAttestor({
      clock,
      systemdRunning: () => true,
      show: async (unit) => {
        asked.push(unit);
        if (fail) throw new Error('systemctl show timed out');
        return { id: unit, fragmentPath: `/usr/lib/systemd/system/${unit}` };
      },
    });
    await expect(attestor.selectors('nginx.service')).rejects.toThrow(/timed out/);
    fail = false;
    expect(await attestor.selectors('nginx.service')).toEqual(['systemd:id:nginx.service', 'systemd:fragment_path:/usr/lib/systemd/system/nginx.service']);
    await attestor.selectors('nginx.service');
    expect(asked).toEqual(['nginx.service', 'nginx.service']);
    clock.advance(11);
    await attestor.selectors('nginx.service');
    expect(asked).toHaveLength(3);
    expect(await attestor.selectors(undefined)).toEqual([]);
  });

  it('without systemd, reads the unit file from the search path; a unit without one gets only systemd:id', async () => {
    writeFileSync(join(root, 'lib', 'nginx.service'), '[Service]\n');
    const attestor = new SystemdWorkloadAttestor({ clock: new FakeClock(new Date()), systemdRunning: () => false, unitDirs: dirs() });
    const expected = isRoot ? ['systemd:id:nginx.service', `systemd:fragment_path:${join(root, 'lib', 'nginx.service')}`] : ['systemd:id:nginx.service'];
    expect(await attestor.selectors('nginx.service')).toEqual(expected);
    expect(await attestor.selectors('session-4.scope')).toEqual(['systemd:id:session-4.scope']);
  });
});
