import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve as resolvePath } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseConfig, expand } from '../../../cli/config-file.js';
import { closest, command, commandUsage, editDistance, flags, isGroup, parseCommand, translateApiMessage, UsageError, type CommandSpec, type FlagTable, type ParseContext } from '../../../cli/flags.js';
import { bashCompletion, zshCompletion } from '../../../cli/completion.js';
import { COMMANDS, resolve, undocumentedFlags, walk } from '../../../cli/registry.js';
import { packageRoot } from '../../../lib/paths.js';

const noop = async (): Promise<void> => undefined;

const TABLE = flags({
  'spiffe-id': { type: 'string', value: 'ID', required: true, description: 'the SPIFFE ID' },
  selector: { type: 'string', multiple: true, value: 'TYPE:VALUE', description: 'a selector' },
  ttl: { type: 'string', value: 'DURATION', check: (v) => (/^\d+[smhd]$/.test(v) ? v : fail('must be a duration')), description: 'lifetime' },
  listen: { type: 'string', value: 'HOST:PORT', env: ['T_LISTEN'], default: '127.0.0.1:1', description: 'listener' },
  admin: { type: 'boolean', description: 'admin' },
  mode: { type: 'string', choices: ['a', 'b'], description: 'a mode' },
  config: { type: 'string', value: 'FILE', description: 'config file' },
});
function fail(message: string): never {
  throw new Error(message);
}
const create = command({ name: 'create', summary: 'create', flags: TABLE, positionals: [{ name: 'NAME', description: 'a name' }], run: noop });
const remove = command({ name: 'delete', summary: 'delete', flags: flags({ force: { type: 'boolean', description: 'force' } }), run: noop });
const update = command({ name: 'update', summary: 'update', flags: flags({ ttl: TABLE.ttl }), refuse: { 'key-type': 'cannot be changed by update: fixed at creation' }, run: noop });

const ctx = (extra: Partial<ParseContext> = {}): ParseContext => ({ path: 'thing create', siblings: [create, remove, update], env: {}, ...extra });
const parse = (argv: string[], spec: CommandSpec = create, extra: Partial<ParseContext> = {}) => parseCommand(spec, argv, ctx({ ...extra, path: `thing ${spec.name}` }));
const usageError = async (p: Promise<unknown>): Promise<string> => {
  const err = await p.then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(UsageError);
  return (err as UsageError).message;
};

describe('the command tables', () => {
  const everything = walk();

  it('give every command and group a one-line summary, and every flag and argument a one-line description', () => {
    const missing: string[] = [];
    const oneLine = (text: string | undefined) => typeof text === 'string' && text.trim() !== '' && !text.includes('\n');
    for (const { path, spec } of everything) {
      const name = path.join(' ');
      if (!oneLine(spec.summary)) missing.push(`${name}: summary`);
      if (isGroup(spec)) continue;
      for (const [flag, f] of Object.entries(spec.flags as FlagTable)) {
        if (!oneLine(f.description)) missing.push(`${name} --${flag}: description`);
        if (!/^[a-z0-9][a-z0-9-]*$/.test(flag)) missing.push(`${name} --${flag}: name`);
        if (f.type === 'string' && !f.value && !f.choices) missing.push(`${name} --${flag}: value name`);
      }
      for (const p of spec.positionals ?? []) if (!oneLine(p.description)) missing.push(`${name} ${p.name}: description`);
    }
    expect(missing).toEqual([]);
  });

  it('print every flag with its description in its command\'s usage', () => {
    const missing: string[] = [];
    for (const { path, spec } of everything) {
      if (isGroup(spec)) continue;
      const page = commandUsage(path.join(' '), spec);
      for (const [flag, f] of Object.entries(spec.flags as FlagTable)) {
        const lines = page.split('\n');
        const at = lines.findIndex((l) => new RegExp(`^  (-\\w, )?--${flag}\\b`).test(l));
        if (at < 0 || !lines.slice(at, at + 2).join('\n').includes(f.description)) missing.push(`${path.join(' ')} --${flag}`);
      }
    }
    expect(missing).toEqual([]);
  });

  it('a flag without a description is caught (the check above can fail)', () => {
    const bad = command({ name: 'x', summary: 'x', flags: { y: { type: 'boolean', description: '' } }, run: noop });
    expect(Object.values(bad.flags as FlagTable).every((f) => f.description.trim() !== '')).toBe(false);
  });

  it('name each command once per group, and map API fields only to flags the command has', () => {
    const problems: string[] = [];
    for (const { path, spec } of everything) {
      if (isGroup(spec)) {
        const names = spec.commands.map((c) => c.name);
        if (new Set(names).size !== names.length) problems.push(`${path.join(' ')}: duplicate command`);
        continue;
      }
      for (const flag of Object.values(spec.apiFields ?? {})) if (!(flag in spec.flags)) problems.push(`${path.join(' ')}: apiFields names --${flag}`);
      for (const flag of Object.keys(spec.refuse ?? {})) if (flag in spec.flags) problems.push(`${path.join(' ')}: refuses its own --${flag}`);
    }
    expect(problems).toEqual([]);
  });

  it('resolve commands and suggest the closest on a typo', () => {
    expect(resolve(['trust-domain', 'update', 'x']).path).toEqual(['trust-domain', 'update']);
    expect(resolve(['attestor', 'k8s-psat', 'add', '--cluster', 'c']).path).toEqual(['attestor', 'k8s-psat', 'add']);
    expect(() => resolve(['trust-domian'])).toThrow('unknown command "trust-domian" (did you mean trust-domain?)');
    expect(() => resolve(['entry', 'craete'])).toThrow('unknown entry command "craete" (did you mean create?)');
    expect(undocumentedFlags(['agent', 'start', '--socket', '/x', '--kubelet-insecure'])).toEqual(['--kubelet-insecure']);
    expect(undocumentedFlags(['nope'])).toEqual(['unexpected command nope']);
  });
});

describe('did you mean', () => {
  it('measures edits with adjacent transpositions', () => {
    expect(editDistance('selecter', 'selector')).toBe(1);
    expect(editDistance('tlt', 'ttl')).toBe(1);
    expect(editDistance('', 'abc')).toBe(3);
  });

  it('suggests a near name or the only one a prefix matches, and nothing for strangers', () => {
    const names = ['spiffe-id', 'parent-id', 'selector', 'x509-svid-ttl', 'jwt-svid-ttl', 'json'];
    expect(closest('selecter', names)).toBe('selector');
    expect(closest('spifeid', names)).toBe('spiffe-id');
    expect(closest('x509-svid', names)).toBe('x509-svid-ttl');
    expect(closest('jsno', names)).toBe('json');
    expect(closest('frobnicate', names)).toBeUndefined();
  });
});

describe('parseCommand', () => {
  it('types values from the table: strings, lists, booleans, defaults, positionals', async () => {
    const { values, positionals } = await parse(['n1', '--spiffe-id', 'spiffe://td/a', '--selector', 'a:1', '--selector=b:2', '--admin', '--ttl', '5m']);
    expect(values).toEqual({ 'spiffe-id': 'spiffe://td/a', selector: ['a:1', 'b:2'], admin: true, ttl: '5m', listen: '127.0.0.1:1' });
    expect(positionals).toEqual(['n1']);
    expect((await parse(['--spiffe-id', 'x', '--admin=false'])).values.admin).toBe(false);
  });

  it('names the flag as typed and suggests the closest for a typo', async () => {
    expect(await usageError(parse(['--spiffe-id', 'x', '--selecter', 'a:1']))).toBe('unknown flag --selecter (did you mean --selector?)');
    expect(await usageError(parse(['--spiffe-id', 'x', '--selecter=a:1']))).toBe('unknown flag --selecter (did you mean --selector?)');
    expect(await usageError(parse(['-admin']))).toBe('unknown flag -admin (did you mean --admin?)');
    expect(await usageError(parse(['--zzz']))).toBe('unknown flag --zzz');
    expect(await usageError(parse(['--force'], update))).toBe('unknown flag --force for thing update (it is a flag of thing delete)');
    expect(await usageError(parse(['--key-type', 'rsa'], update))).toBe('--key-type cannot be changed by update: fixed at creation');
  });

  it('reports missing, malformed, repeated and misplaced values in terms of the flag', async () => {
    expect(await usageError(parse([]))).toBe('thing create needs --spiffe-id ID (the SPIFFE ID)');
    expect(await usageError(parse(['--spiffe-id']))).toBe('--spiffe-id needs a value (ID)');
    expect(await usageError(parse(['--spiffe-id', '--admin']))).toBe('--spiffe-id needs a value (ID) before --admin');
    expect(await usageError(parse(['--spiffe-id', 'x', '--ttl', '-5']))).toBe('--ttl needs a value (DURATION); to give a value that starts with "-", write --ttl=-5');
    expect(await usageError(parse(['--spiffe-id', 'x', '--ttl', '10x']))).toBe('--ttl must be a duration');
    expect(await usageError(parse(['--spiffe-id', 'x', '--spiffe-id', 'y']))).toBe('--spiffe-id given more than once (it takes one value)');
    expect(await usageError(parse(['--spiffe-id', 'x', '--admin=yes']))).toBe('--admin takes no value (write --admin, or --admin=false)');
    expect(await usageError(parse(['--spiffe-id', 'x', '--mode', 'c']))).toBe('--mode must be one of a, b (got "c")');
    expect(await usageError(parse(['--spiffe-id', 'x', 'n1', 'n2']))).toBe('unexpected argument "n2" (thing create takes NAME)');
  });

  it('takes values from flags, then the config file, then the environment, then defaults', async () => {
    const loadConfig = async () => ({ listen: '10.0.0.1:2', ttl: '1h', selector: ['c:3'] });
    const fromFile = await parse(['--config', 'f.yaml', '--spiffe-id', 'x', '--ttl', '2h'], create, { loadConfig, env: { T_LISTEN: '10.9.9.9:9' } });
    expect(fromFile.values).toMatchObject({ listen: '10.0.0.1:2', ttl: '2h', selector: ['c:3'] });
    const fromEnv = await parse(['--spiffe-id', 'x'], create, { env: { T_LISTEN: '10.9.9.9:9' } });
    expect(fromEnv.values.listen).toBe('10.9.9.9:9');
    expect(await usageError(parse(['--spiffe-id', 'x', '--config', 'f.yaml'], create, { loadConfig: async () => ({ ttl: 'soon' }) }))).toBe('ttl in f.yaml must be a duration');
  });
});

describe('API messages', () => {
  it('name the flag instead of the body or query field', () => {
    const fields = { selectors: 'selector', ttlSeconds: 'ttl', expiringBefore: 'expiring-before' };
    expect(translateApiMessage("body must have required property 'selectors'", fields)).toBe('--selector is required');
    expect(translateApiMessage('querystring/expiringBefore must match format "date-time"', fields)).toBe('--expiring-before must match format "date-time"');
    expect(translateApiMessage('ttlSeconds must be between 60 and 86400 seconds', fields)).toBe('--ttl must be between 60 and 86400 seconds');
    expect(translateApiMessage('body/ttlSeconds must be >= 1', fields)).toBe('--ttl must be >= 1');
    expect(translateApiMessage('x509SvidTtlSeconds is fine', fields)).toBe('x509SvidTtlSeconds is fine');
  });
});

describe('--config files', () => {
  const env = { HOST: '10.1.2.3', EMPTY: '' };
  it('are YAML mappings of flag names, typed by the table, with ${VAR} and ${VAR:-default} expanded', () => {
    const text = 'listen: ${HOST}:8080\nttl: ${TTL:-1h}\nmode: "${EMPTY:-a}"\nselector:\n  - unix:uid:1\n  - k8s:ns:$${literal}\nadmin: true\n';
    expect(parseConfig(text, 'c.yaml', TABLE, env)).toEqual({ listen: '10.1.2.3:8080', ttl: '1h', mode: 'a', selector: ['unix:uid:1', 'k8s:ns:${literal}'], admin: true });
    expect(parseConfig('selector: a:1\n', 'c.yaml', TABLE, env)).toEqual({ selector: ['a:1'] });
    expect(parseConfig('', 'c.yaml', TABLE, env)).toEqual({});
    // failsafe schema: nothing is reinterpreted
    expect(parseConfig('ttl: 0123\nlisten: yes\n', 'c.yaml', TABLE, env)).toEqual({ ttl: '0123', listen: 'yes' });
  });

  it('refuse unknown keys (with a suggestion), missing variables, wrong shapes and bad YAML', () => {
    const err = (text: string) => {
      try {
        parseConfig(text, 'c.yaml', TABLE, env);
      } catch (e) {
        expect(e).toBeInstanceOf(UsageError);
        return (e as Error).message;
      }
      throw new Error('no error');
    };
    expect(err('lisen: x\n')).toBe('unknown key "lisen" in c.yaml (did you mean listen?)');
    expect(err('listen: ${NOPE}\n')).toBe('listen in c.yaml: environment variable NOPE is not set (write ${NOPE:-default} to give a default)');
    expect(err('listen: ${1X}\n')).toMatch(/listen in c\.yaml: "\$\{1X\}" is not a variable reference/);
    expect(err('admin: yes\n')).toBe('admin in c.yaml must be true or false (got "yes")');
    expect(err('listen: [a, b]\n')).toBe('listen in c.yaml takes one value, not a list');
    expect(err('listen:\n')).toBe('listen in c.yaml needs a value');
    expect(err('- a\n')).toMatch(/must be a mapping of flag names/);
    expect(err('config: other.yaml\n')).toMatch(/do not nest/);
    expect(err('listen: a\nlisten: b\n')).toMatch(/is not valid YAML/);
  });

  it('expand after parsing, so a variable cannot add keys or structure', () => {
    expect(parseConfig('listen: ${EVIL}\n', 'c.yaml', TABLE, { EVIL: 'x\nadmin: true' })).toEqual({ listen: 'x\nadmin: true' });
    expect(expand('a$$b', {}, 'w')).toBe('a$b');
  });
});

describe('the log flags of the servers', () => {
  it('offer exactly the levels and formats lib/log.ts accepts (the table cannot import it: pino)', async () => {
    const { LOG_LEVELS, LOG_FORMATS } = await import('../../../lib/log.js');
    const { LOG_FLAGS } = await import('../../../cli/specs/common.js');
    expect(LOG_FLAGS['log-level'].choices).toEqual([...LOG_LEVELS]);
    expect(LOG_FLAGS['log-format'].choices).toEqual([...LOG_FORMATS]);
  });
});

describe('the example config files in deploy/config', () => {
  // The KEK file must be readable when ca start checks its settings (before anything is opened).
  const dir = mkdtempSync(join(tmpdir(), 'cairn-config-'));
  const kek = join(dir, 'kek');
  writeFileSync(kek, '00'.repeat(32), { mode: 0o600 });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  it.each([
    ['ca.yaml', ['ca', 'start']],
    ['agent.yaml', ['agent', 'start']],
  ])('%s holds only flags of its command, with valid values', async (file, path) => {
    const { spec } = resolve(path);
    if (isGroup(spec)) throw new Error('not a command');
    const full = join(packageRoot(), 'deploy', 'config', file);
    const env = { DATABASE_URL: 'postgres://cairn@db/cairn', CAIRN_KEK_FILE: kek, CLUSTER_NAME: 'prod', CAIRN_CA_PIN: 'sha256:x', NODE_IP: '192.0.2.1' };
    const parsed = await parseCommand(spec, ['--config', full], { path: path.join(' '), env: {}, loadConfig: async (f, table) => parseConfig(readFileSync(f, 'utf8'), f, table, env) });
    expect(Object.keys(parsed.values)).toContain('data-dir');
  });
});

describe('shell completion scripts', () => {
  it('name every command, subcommand and flag', () => {
    const bash = bashCompletion();
    const zsh = zshCompletion();
    for (const { path, spec } of walk()) {
      if (isGroup(spec)) expect(bash).toContain(`'${path.join(' ')}') echo '${spec.commands.map((c) => c.name).join(' ')}'`);
      else for (const flag of Object.keys(spec.flags)) expect(bash).toContain(`--${flag}`);
    }
    expect(zsh).toMatch(/^#compdef cairn\n/);
    expect(zsh).toContain(`'') echo '${COMMANDS.map((c) => c.name).join(' ')}'`);
  });
});

describe('start-up cost', () => {
  const root = packageRoot();
  /** Modules a file loads before running anything: static imports, followed; `import()` is not. */
  function staticClosure(entry: string): { files: Set<string>; packages: Set<string> } {
    const files = new Set<string>();
    const packages = new Set<string>();
    const visit = (file: string): void => {
      if (files.has(file)) return;
      files.add(file);
      const text = readFileSync(file, 'utf8');
      for (const m of text.matchAll(/^(?:import|export)\s+(?!type\b)[^'"]*?from\s+['"]([^'"]+)['"]|^import\s+['"]([^'"]+)['"]/gm)) {
        const spec = (m[1] ?? m[2])!;
        if (spec.startsWith('.')) visit(resolvePath(dirname(file), spec.replace(/\.js$/, '.ts')));
        else if (!spec.startsWith('node:')) packages.add(spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]!);
      }
    };
    visit(join(root, entry));
    return { files, packages };
  }

  it('the CLI loads no command handler, server, database driver or YAML parser before it knows the command', () => {
    const { files, packages } = staticClosure('cli/main.ts');
    const rel = [...files].map((f) => relative(root, f));
    expect(rel.filter((f) => /^cli\/commands\/|^ca\/(?!trust-domains\/model\.ts)|^node-agent\/|^workload-api\//.test(f))).toEqual([]);
    expect([...packages]).toEqual([]);
  });

  it('`cairn agent start` does not load the CA (fastify, pg, PGlite)', () => {
    const { files, packages } = staticClosure('cli/commands/agent.ts');
    expect([...files].map((f) => relative(root, f)).filter((f) => f.startsWith('ca/'))).toEqual([]);
    expect([...packages].filter((p) => ['fastify', 'pg', '@electric-sql/pglite', 'yaml'].includes(p))).toEqual([]);
  });
});
