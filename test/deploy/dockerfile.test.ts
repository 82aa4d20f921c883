import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, posix } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { packageRoot } from '../../lib/paths.js';
import { storeKind } from '../support/db.js';
import { freePort, spawnCairn, type Spawned } from '../support/processes.js';

const ROOT = packageRoot();

interface Instruction {
  readonly keyword: string;
  readonly args: string;
}
interface Stage {
  readonly image: string;
  readonly name: string | undefined;
  readonly instructions: Instruction[];
}

/**
 * The Dockerfile as BuildKit reads it: whole-line comments dropped (also inside a continued
 * instruction), backslash continuations joined, one instruction per stage list entry.
 */
function parseDockerfile(text: string): Stage[] {
  const logical: string[] = [];
  let current = '';
  for (const raw of text.split('\n')) {
    if (/^\s*#/.test(raw)) continue;
    if (current === '' && raw.trim() === '') continue;
    if (/\\\s*$/.test(raw)) {
      current += raw.replace(/\\\s*$/, ' ');
      continue;
    }
    logical.push((current + raw).trim());
    current = '';
  }
  if (current.trim()) logical.push(current.trim());
  const stages: Stage[] = [];
  for (const line of logical) {
    const m = /^(\w+)\s+([\s\S]*)$/.exec(line);
    if (!m) throw new Error(`not an instruction: ${line}`);
    const keyword = m[1]!.toUpperCase();
    const args = m[2]!.replace(/\s+/g, ' ').trim();
    if (keyword === 'FROM') {
      const f = /^(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?$/i.exec(args);
      if (!f) throw new Error(`bad FROM: ${args}`);
      stages.push({ image: f[1]!, name: f[2], instructions: [] });
    } else {
      if (stages.length === 0) throw new Error(`${keyword} before FROM`);
      stages.at(-1)!.instructions.push({ keyword, args });
    }
  }
  return stages;
}

const dockerfile = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');
const stages = parseDockerfile(dockerfile);
const stage = (name: string): Stage => {
  const s = stages.find((x) => x.name === name);
  if (!s) throw new Error(`no stage ${name}`);
  return s;
};
const runs = (s: Stage) => s.instructions.filter((i) => i.keyword === 'RUN').map((i) => i.args);
const copies = (s: Stage) =>
  s.instructions.filter((i) => i.keyword === 'COPY').map((i) => {
    const words = i.args.split(' ');
    const from = words.find((w) => w.startsWith('--from='))?.slice('--from='.length);
    const paths = words.filter((w) => !w.startsWith('--'));
    return { from, sources: paths.slice(0, -1), dest: paths.at(-1)! };
  });
const workdirOf = (s: Stage) => s.instructions.filter((i) => i.keyword === 'WORKDIR').at(-1)?.args;
const runtime = stages.at(-1)!;

/** Compilers and build tools: none may be installed or invoked in the stage the image ships. */
const BUILD_TOOLS = /\b(apt-get|apt|apk|gcc|g\+\+|cc|clang|make|python3?|build-essential|node-gyp|npm (ci|install|rebuild)|npx)\b/;

describe('Dockerfile', () => {
  it('parses: comments and continuations as BuildKit reads them, and a malformed file is an error', () => {
    expect(parseDockerfile('# c\nFROM a AS b\nRUN x \\\n # inner comment\n && y\n')).toEqual([{ image: 'a', name: 'b', instructions: [{ keyword: 'RUN', args: 'x && y' }] }]);
    expect(() => parseDockerfile('RUN x\n')).toThrow(/before FROM/);
  });

  it('is multi-stage, every stage on the official node:20 bookworm-slim image pinned by digest', () => {
    expect(stages.map((s) => s.name)).toEqual(['build', 'deps', 'runtime']);
    const names = new Set(stages.map((s) => s.name));
    const bases = stages.map((s) => s.image).filter((image) => !names.has(image));
    expect(bases).toHaveLength(stages.length); // no stage builds on another: the runtime starts clean
    for (const image of bases) expect(image).toMatch(/^node:20-bookworm-slim@sha256:[0-9a-f]{64}$/);
    expect(new Set(bases).size).toBe(1);
  });

  it('build: the addon toolchain, Node\'s headers where build-addon.sh looks, npm ci and the TypeScript build', () => {
    const build = stage('build');
    expect(runs(build).join('\n')).toMatch(/apt-get install -y --no-install-recommends python3 make g\+\+/);
    expect(workdirOf(build)).toBe('/opt/cairn');
    expect(build.instructions).toContainEqual({ keyword: 'ENV', args: 'CAIRN_NODEDIR=/usr/local' });
    expect(readFileSync(join(ROOT, 'scripts', 'build-addon.sh'), 'utf8')).toContain('CAIRN_NODEDIR');
    expect(runs(build)).toContain('npm ci && npm run build');
  });

  it('deps: production dependencies only, from the lockfile, running no install script', () => {
    const deps = stage('deps');
    expect(copies(deps)).toEqual([{ from: undefined, sources: ['package.json', 'package-lock.json'], dest: './' }]);
    expect(runs(deps)).toHaveLength(1);
    expect(runs(deps)[0]).toMatch(/^npm ci --omit=dev --ignore-scripts\b/);
  });

  it('runtime: no compiler or build step, dependencies only from deps, built files only from build, a numeric non-root user', () => {
    expect(runtime.name).toBe('runtime');
    for (const run of runs(runtime)) expect(run).not.toMatch(BUILD_TOOLS);
    for (const i of runtime.instructions.filter((x) => x.keyword === 'ADD')) expect.fail(`ADD in the runtime stage: ${i.args}`);
    const copied = copies(runtime);
    for (const c of copied) expect(c.from, `COPY ${c.sources.join(' ')} must come from a stage`).toBeDefined();
    expect(copied.filter((c) => c.sources.some((s) => /node_modules/.test(s)))).toEqual([{ from: 'deps', sources: ['/opt/cairn/node_modules'], dest: './node_modules' }]);
    expect(copied.filter((c) => c.from === 'build').flatMap((c) => c.sources).sort()).toEqual([
      '/opt/cairn/build/Release/cairn_ecdsa.node', '/opt/cairn/build/Release/cairn_peercred.node', '/opt/cairn/deploy/compose', '/opt/cairn/dist', '/opt/cairn/migrations', '/opt/cairn/package.json',
    ]);
    const users = runtime.instructions.filter((i) => i.keyword === 'USER').map((i) => i.args);
    expect(users.at(-1)).toMatch(/^[1-9]\d*:[1-9]\d*$/); // numeric, so Kubernetes' runAsNonRoot can verify it
    expect(runtime.instructions.at(-1)).toEqual({ keyword: 'CMD', args: '["--help"]' });
    expect(runtime.instructions).toContainEqual({ keyword: 'ENTRYPOINT', args: '["node", "/opt/cairn/dist/cli/main.js"]' });
    expect(workdirOf(runtime)).toBe('/opt/cairn');
  });

  it('the checks catch a compiler in the runtime stage and an unpinned base', () => {
    const bad = parseDockerfile(dockerfile.replace(/FROM node:20-bookworm-slim@sha256:[0-9a-f]{64} AS runtime/, 'FROM node:20-bookworm-slim AS runtime\nRUN apt-get update && apt-get install -y g++'));
    expect(bad.at(-1)!.image).not.toMatch(/@sha256:/);
    expect(runs(bad.at(-1)!).some((r) => BUILD_TOOLS.test(r))).toBe(true);
    expect('npm install --omit=dev').toMatch(BUILD_TOOLS);
  });

  it('.dockerignore keeps host build output and state out of the context, and not what the build needs', () => {
    const ignored = readFileSync(join(ROOT, '.dockerignore'), 'utf8').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
    expect(ignored).toEqual(expect.arrayContaining(['node_modules', 'dist', '.cairn', 'build']));
    for (const needed of ['package.json', 'package-lock.json', 'binding.gyp', 'scripts', 'migrations', 'deploy', 'tsconfig.json', 'tsconfig.build.json']) expect(ignored).not.toContain(needed);
  });
});

// No Docker daemon here: the runtime stage's file tree is assembled from the Dockerfile itself (the
// deps stage's command run for real, the build stage's output being this checkout's, which `npm ci`
// and `npm run build` produced), then the CA and a node agent run from it as uid 1000, and a workload
// gets an SVID through the native addon. A file the runtime needs but the COPY lines miss fails here.
describe.runIf(storeKind() === 'embedded')('the runtime stage, assembled from the Dockerfile and run', () => {
  // made in beforeAll: a skipped describe's body still runs at collection, its hooks do not
  let dir: string;
  const running: Spawned[] = [];
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'cairn-image-'));
    chmodSync(dir, 0o755);
  });
  afterAll(async () => {
    for (const p of running.reverse()) await p.stop();
    rmSync(dir, { recursive: true, force: true });
  }, 180_000);

  it('has exactly the production dependencies and runs the CA, the agent and the Workload API as uid 1000', async () => {
    // deps: its COPY, then its RUN, verbatim
    const deps = stage('deps');
    const depsRoot = join(dir, 'stages', 'deps', workdirOf(deps)!);
    mkdirSync(depsRoot, { recursive: true });
    for (const c of copies(deps)) for (const src of c.sources) cpSync(join(ROOT, src), join(depsRoot, src));
    for (const run of runs(deps)) execFileSync('sh', ['-c', run], { cwd: depsRoot, stdio: 'pipe', timeout: 600_000 });

    // runtime: every COPY --from, from the stage it names (the build stage's WORKDIR is this checkout)
    const buildWorkdir = workdirOf(stage('build'))!;
    const inStage = (name: string, path: string): string => {
      if (name === 'deps') return join(dir, 'stages', 'deps', path);
      if (name === 'build' && (path === buildWorkdir || path.startsWith(buildWorkdir + '/'))) return join(ROOT, posix.relative(buildWorkdir, path));
      throw new Error(`COPY --from=${name} ${path}: not a file this test can map`);
    };
    const image = join(dir, 'image');
    const workdir = join(image, ...workdirOf(runtime)!.split('/'));
    mkdirSync(workdir, { recursive: true });
    for (const c of copies(runtime)) {
      for (const src of c.sources) {
        const to = posix.isAbsolute(c.dest) ? join(image, c.dest) : join(workdir, c.dest);
        mkdirSync(dirname(to), { recursive: true });
        cpSync(inStage(c.from!, src), to, { recursive: true });
      }
    }

    // exactly the lockfile's production packages, none of the development ones
    const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, { dev?: boolean; optional?: boolean }> };
    for (const [path, entry] of Object.entries(lock.packages)) {
      if (!/^node_modules\/(@[^/]+\/)?[^/]+$/.test(path)) continue;
      if (entry.dev) expect(existsSync(join(workdir, path)), `${path} (a dev dependency) is in the image`).toBe(false);
      else if (!entry.optional) expect(existsSync(join(workdir, path)), `${path} is missing from the image`).toBe(true);
    }
    for (const tool of ['typescript', 'vitest', 'tsx', 'node-gyp']) expect(existsSync(join(workdir, 'node_modules', tool)), tool).toBe(false);

    // as the image's USER, from the image's tree: cairn up (CA, agent with the native addon), then a workload's SVID
    const [uid, gid] = runtime.instructions.filter((i) => i.keyword === 'USER').at(-1)!.args.split(':').map(Number) as [number, number];
    const data = join(dir, 'data');
    mkdirSync(data, { mode: 0o700 });
    chownSync(data, uid, gid);
    const asUser = ['setpriv', `--reuid=${uid}`, `--regid=${gid}`, '--clear-groups', '--'];
    const cli = join(workdir, 'dist', 'cli', 'main.js');
    const env = { CAIRN_DATA_DIR: data, DATABASE_URL: undefined, CAIRN_ADMIN_TOKEN: undefined, CAIRN_SERVER: undefined, HOME: data };
    const up = spawnCairn(['up', '--listen', `127.0.0.1:${await freePort()}`, '--tls-listen', '127.0.0.1:0'], env, [], { wrapper: asUser, cli });
    running.push(up);
    expect(up.child.spawnargs.slice(0, 2)).toEqual(['setpriv', `--reuid=${uid}`]);
    expect(up.child.spawnargs).toContain(cli);
    await up.waitFor(/Press Ctrl-C to stop/, 240_000);
    const fetched = execFileSync(asUser[0]!, [...asUser.slice(1), process.execPath, cli, 'svid', 'fetch', '--write', join(data, 'svid')], { env: { ...process.env, CAIRN_DATA_DIR: data, HOME: data }, encoding: 'utf8', timeout: 120_000, stdio: ['ignore', 'pipe', 'pipe'] });
    expect(fetched).toMatch(/^spiffe:\/\/example\.org\/user\/\S+\n$/);
    expect(statSync(join(data, 'svid', 'svid.key')).uid).toBe(uid);
  }, 900_000);
});
