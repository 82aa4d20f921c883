import { execFile } from 'node:child_process';
import { lstatSync, realpathSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Clock } from '../../lib/clock.js';

/**
 * The systemd workload attestor, after SPIRE's: `systemd:id:<unit>` and
 * `systemd:fragment_path:<unit file>` for the unit of the system manager that holds the caller.
 *
 * The unit comes from the kernel's record of the caller's cgroup (/proc/<pid>/cgroup), read the way
 * systemd itself maps a cgroup to a unit: leading slices are skipped and the first other component
 * is the unit. Only root (through the system manager) creates cgroups at that level; a user manager
 * or a service with `Delegate=yes` can create and move its processes into cgroups *below* its own
 * unit, named as it likes (even `…/user@1000.service/app.slice/sshd.service`), but never change
 * that first component. So a process in a user session maps to `session-N.scope` or
 * `user@<uid>.service`, never to a unit its user manager or a delegated subtree made up.
 */

/** systemd's unit names for what can hold processes: services and scopes (slices only nest them). */
const UNIT = /^[A-Za-z0-9:_.\\-]+(@[A-Za-z0-9:_.\\-]*)?\.(service|scope)$/;
const SLICE = /^[A-Za-z0-9:_.\\-]+\.slice$/;

/** systemd escapes cgroup names that would clash with kernel files by prefixing '_' (cg_escape). */
const unescape = (component: string): string => (component.startsWith('_') ? component.slice(1) : component);

/** The system manager's unit for one cgroup path (`/system.slice/nginx.service/…`), or undefined. */
export function unitFromCgroupPath(path: string): string | undefined {
  if (!path.startsWith('/')) return undefined;
  for (const raw of path.split('/').slice(1)) {
    // a path outside our cgroup namespace ('/../..') or an empty component names nothing we can vouch for
    if (raw === '' || raw === '.' || raw === '..') return undefined;
    const component = unescape(raw);
    if (SLICE.test(component)) continue;
    return component.length <= 255 && UNIT.test(component) ? component : undefined;
  }
  return undefined;
}

/**
 * The unit from the text of /proc/<pid>/cgroup: the cgroup v2 line (`0::/…`) and the cgroup v1
 * `name=systemd` hierarchy, whichever exist (hybrid hosts have both). Lines that name different
 * units give undefined: the system manager keeps them in step, so a disagreement was made by hand.
 */
export function unitFromCgroup(text: string): string | undefined {
  let found: string | undefined;
  for (const line of text.split('\n')) {
    const first = line.indexOf(':');
    const second = first < 0 ? -1 : line.indexOf(':', first + 1);
    if (second < 0) continue;
    const controllers = line.slice(first + 1, second);
    const isV2 = line.slice(0, first) === '0' && controllers === '';
    if (!isV2 && !controllers.split(',').includes('name=systemd')) continue;
    const unit = unitFromCgroupPath(line.slice(second + 1).trim());
    if (unit === undefined) continue;
    if (found !== undefined && found !== unit) return undefined;
    found = unit;
  }
  return found;
}

/** Where systemd looks for system unit files, in its order (systemd.unit(5), "System Unit Search Path"). */
export const SYSTEM_UNIT_DIRS: readonly string[] = [
  '/etc/systemd/system.control',
  '/run/systemd/system.control',
  '/run/systemd/transient',
  '/run/systemd/generator.early',
  '/etc/systemd/system',
  '/etc/systemd/system.attached',
  '/run/systemd/system',
  '/run/systemd/system.attached',
  '/run/systemd/generator',
  '/usr/local/lib/systemd/system',
  '/usr/lib/systemd/system',
  '/lib/systemd/system',
  '/run/systemd/generator.late',
];

/** Owned by root and writable by nobody else: a file a workload could have written says nothing. */
function rootOwned(path: string): boolean {
  try {
    const st = statSync(path);
    return st.uid === 0 && (st.mode & 0o022) === 0;
  } catch {
    return false;
  }
}

/**
 * The unit file systemd would load for `unit`, when systemd is not there to ask: the first match in
 * the system search path, the template (`foo@.service`) for an instance. A symlink (an alias or a
 * linked unit file) is resolved, as systemd reports FragmentPath.
 */
export function findUnitFile(unit: string, dirs: readonly string[] = SYSTEM_UNIT_DIRS): string | undefined {
  const at = unit.indexOf('@');
  const dot = unit.lastIndexOf('.');
  const names = at >= 0 && at < dot - 1 ? [unit, `${unit.slice(0, at + 1)}${unit.slice(dot)}`] : [unit];
  for (const name of names) {
    for (const dir of dirs) {
      const candidate = join(dir, name);
      try {
        lstatSync(candidate);
      } catch {
        continue;
      }
      let real: string;
      try {
        real = realpathSync(candidate);
      } catch {
        continue; // a dangling symlink (or /dev/null mask) loads nothing
      }
      if (real === '/dev/null') return undefined; // masked
      return rootOwned(real) && rootOwned(join(real, '..')) && rootOwned(dir) ? real : undefined;
    }
  }
  return undefined;
}

export interface UnitProperties {
  readonly id: string;
  /** Empty for units without a file (e.g. scopes made by a session manager without a transient file). */
  readonly fragmentPath: string;
}

/** Asks the running system manager (`systemctl show`), bounded by a timeout. */
export function systemctlShow(unit: string, timeoutMs: number): Promise<UnitProperties> {
  return new Promise((resolve, reject) => {
    execFile('systemctl', ['show', '--property=Id,FragmentPath', '--', unit], { timeout: timeoutMs, maxBuffer: 64 * 1024, env: { ...process.env, SYSTEMD_PAGER: '', LC_ALL: 'C' } }, (err, stdout) => {
      if (err) {
        reject(new Error(`systemctl show ${unit} failed: ${err.killed ? `no answer within ${timeoutMs} ms` : err.message.split('\n')[0]}`, { cause: err }));
        return;
      }
      const props = new Map<string, string>();
      for (const line of stdout.split('\n')) {
        const eq = line.indexOf('=');
        if (eq > 0) props.set(line.slice(0, eq), line.slice(eq + 1));
      }
      resolve({ id: props.get('Id') || unit, fragmentPath: props.get('FragmentPath') ?? '' });
    });
  });
}

export interface SystemdAttestorOptions {
  readonly clock: Clock;
  /** Whether the system manager runs (sd_booted: /run/systemd/system is a directory). */
  readonly systemdRunning?: () => boolean;
  /** How to ask it; `systemctl show` by default. */
  readonly show?: (unit: string) => Promise<UnitProperties>;
  /** Where to find unit files when it does not run. */
  readonly unitDirs?: readonly string[];
  /** How long one unit's answer serves; default 10 s (FragmentPath changes only on daemon-reload). */
  readonly cacheMs?: number;
  /** Limit for one `systemctl show`; default 2000 ms. */
  readonly timeoutMs?: number;
}

const sdBooted = (): boolean => {
  try {
    return lstatSync('/run/systemd/system').isDirectory();
  } catch {
    return false;
  }
};

export class SystemdWorkloadAttestor {
  private readonly cache = new Map<string, { at: number; props: Promise<UnitProperties> }>();
  private readonly cacheMs: number;
  private readonly timeoutMs: number;

  constructor(private readonly options: SystemdAttestorOptions) {
    this.cacheMs = options.cacheMs ?? 10_000;
    this.timeoutMs = options.timeoutMs ?? 2000;
  }

  /**
   * Selectors for a unit read from the caller's cgroup at accept. Throws when systemd runs but
   * cannot be asked, so the caller is told to come back rather than silently given fewer selectors.
   */
  async selectors(unit: string | undefined): Promise<string[]> {
    if (unit === undefined) return [];
    const props = await this.properties(unit);
    const out = [`systemd:id:${unit}`];
    if (props.fragmentPath.startsWith('/')) out.push(`systemd:fragment_path:${props.fragmentPath}`);
    return out;
  }

  private properties(unit: string): Promise<UnitProperties> {
    const now = this.options.clock.now().getTime();
    const hit = this.cache.get(unit);
    if (hit && now >= hit.at && now - hit.at < this.cacheMs) return hit.props;
    const running = (this.options.systemdRunning ?? sdBooted)();
    const props = running
      ? (this.options.show ?? ((u: string) => systemctlShow(u, this.timeoutMs)))(unit)
      : Promise.resolve({ id: unit, fragmentPath: findUnitFile(unit, this.options.unitDirs) ?? '' });
    // a failure is not kept: the next caller asks again
    props.catch(() => this.cache.get(unit)?.props === props && this.cache.delete(unit));
    if (this.cache.size >= 1024) this.cache.delete(this.cache.keys().next().value!);
    this.cache.set(unit, { at: now, props });
    return props;
  }
}
