/**
 * The CLI's framework: flag tables, the parser wrapper, did-you-mean and the usage renderer.
 *
 * How to add to the CLI (read before adding a command or a flag):
 * - Every command is a `command({...})` in the spec module of its group under cli/specs/ (one module per
 *   group: its one-line summary, its commands, their flags and positionals). cli/registry.ts lists the
 *   groups; nothing else needs to know about a new command.
 * - A flag is declared ONCE, in its command's `flags` table: type, `multiple`, `default`, `value` (the
 *   name shown in usage), a one-line `description`, and optionally `required`, `choices`, a value `check`
 *   (see CHECKS), an `env` fallback and a `complete` hint. Usage (`--help`, `cairn help …`), shell
 *   completion, `--config` file keys and every error message come from that table; a test fails when a
 *   flag has no description. Flags shared by several commands live in shared tables (cli/specs/common.ts).
 * - `run` lazily imports the handler from cli/commands/, so `cairn agent start` never loads the CA's web
 *   server: spec modules import only this module, cli/specs/* and light lib/ or spiffe/ helpers.
 * - Handlers get values that are already checked (required flags present, formats valid, env and config
 *   applied) and typed from the table. They throw UsageError for combinations a table cannot express
 *   (exit 2, printed as `error: …`), CliError or CairnError for failures (exit 1).
 * - `apiFields` maps an API body/query field to the flag that sets it, so a 4xx that still names a field
 *   names the flag instead; `refuse` explains why a flag that a sibling command takes is wrong here.
 */
import { parseArgs } from 'node:util';
import { formatDuration, parseDuration } from '../lib/duration.js';
import { parseTrustDomain, SpiffeId } from '../spiffe/id.js';

export class UsageError extends Error {
  override readonly name = 'UsageError';
  /** The command whose usage explains the mistake (`entry create`), for the "see --help" hint. */
  command: string | undefined;
  constructor(message: string, command?: string) {
    super(message);
    this.command = command;
  }
}

/**
 * A setting (flag, environment variable or config file key) whose value cannot work, found before a
 * server opens anything; its message names the setting as the user gave it. Printed as one `error:`
 * line, exit 2 (a restart will not fix it).
 */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

/**
 * Turns a value into its canonical form, or throws an Error whose message completes "--flag …".
 * `where` names the setting as the user gave it (`--listen`, `CAIRN_LISTEN`, `listen in ca.yaml`);
 * a check that words its own message around it throws a ConfigError, which is shown as it is.
 */
export type ValueCheck = (value: string, where: string) => string;

export interface FlagSpec {
  readonly type: 'string' | 'boolean';
  readonly multiple?: boolean;
  readonly short?: string;
  readonly default?: string | boolean;
  /** The value's name in usage: `--listen HOST:PORT`. */
  readonly value?: string;
  /** One line, lower case, no final period: what the flag does. */
  readonly description: string;
  readonly required?: boolean;
  /** With `required`: unless this other flag is given on the command line (it brings the value another way). */
  readonly requiredUnless?: string;
  readonly choices?: readonly string[];
  readonly check?: ValueCheck;
  /** Environment variables read, in order, when the flag is absent (and not in the config file). */
  readonly env?: readonly string[];
  /** What the shell completes for the value: files, directories, or these words (choices complete by themselves). */
  readonly complete?: 'file' | 'dir' | readonly string[];
}

export type FlagTable = Readonly<Record<string, FlagSpec>>;

type One<F extends FlagSpec> = F['type'] extends 'boolean' ? boolean : string;
type ValueOf<F extends FlagSpec> = F extends { multiple: true } ? One<F>[] : One<F>;
/** Values as a handler sees them: present when required or defaulted, else possibly undefined. */
export type Values<T extends FlagTable> = {
  -readonly [K in keyof T]: T[K] extends { requiredUnless: string }
    ? ValueOf<T[K]> | undefined
    : T[K] extends { required: true } | { default: string | boolean }
      ? ValueOf<T[K]>
      : ValueOf<T[K]> | undefined;
};

export interface Parsed<T extends FlagTable> {
  readonly values: Values<T>;
  /** How each value that was given was given (`--kek-file`, `CAIRN_KEK_FILE`, `kek-file in ca.yaml`), for messages checked later. */
  readonly sources: Readonly<Record<string, string>>;
  readonly positionals: readonly string[];
  /** The command's path, `entry create`. */
  readonly command: string;
}

export interface PositionalSpec {
  readonly name: string;
  readonly description: string;
  readonly required?: boolean;
  /** Takes every remaining argument. */
  readonly variadic?: boolean;
  readonly choices?: readonly string[];
  readonly check?: ValueCheck;
}

export interface CommandSpec<T extends FlagTable = FlagTable> {
  readonly name: string;
  /** One line for overviews. */
  readonly summary: string;
  /** A few lines for `--help`, below the usage line. */
  readonly description?: string;
  readonly flags: T;
  readonly positionals?: readonly PositionalSpec[];
  readonly examples?: readonly string[];
  /** API field → flag name (without dashes), to name the flag in a 4xx that names the field. */
  readonly apiFields?: Readonly<Record<string, string>>;
  /** Flag name → why this command refuses it (for flags that sibling commands take). */
  readonly refuse?: Readonly<Record<string, string>>;
  run(args: Parsed<T>): Promise<void>;
}

export interface GroupSpec {
  readonly name: string;
  readonly summary: string;
  readonly description?: string;
  readonly commands: readonly Spec[];
}

export type Spec = CommandSpec | GroupSpec;

export const isGroup = (spec: Spec): spec is GroupSpec => 'commands' in spec;

/** Declares a command; the `const` type parameter keeps the flag table's literal types for Values<T>. */
export function command<const T extends FlagTable>(spec: CommandSpec<T>): CommandSpec<T> {
  return spec;
}

export function group(spec: GroupSpec): GroupSpec {
  return spec;
}

/** Declares a flag table shared by several commands. */
export function flags<const T extends FlagTable>(table: T): T {
  return table;
}

// ---- value checks -----------------------------------------------------------------------------------

const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})$/;

function checkDuration(v: string): string {
  let seconds: number;
  try {
    seconds = parseDuration(v);
  } catch {
    throw new Error(`must be a duration like 90s, 10m, 1h, 30d or 1h30m (got "${v}")`);
  }
  if (seconds < 1) throw new Error(`must be at least 1s (got "${v}")`);
  return v;
}

export const CHECKS = {
  duration: checkDuration,
  /** A duration within the limits the CA enforces, so the CA's "…Seconds must be between" never shows. */
  durationBetween: (limit: { readonly min: number; readonly max: number }): ValueCheck => (v) => {
    checkDuration(v);
    const seconds = parseDuration(v);
    if (seconds < limit.min || seconds > limit.max) throw new Error(`must be between ${formatDuration(limit.min)} and ${formatDuration(limit.max)} (got "${v}")`);
    return v;
  },
  timestamp: (v: string): string => {
    if (!RFC3339.test(v) || Number.isNaN(Date.parse(v))) throw new Error(`must be an RFC 3339 timestamp like 2030-01-31T12:00:00Z (got "${v}")`);
    return v;
  },
  spiffeId: (v: string): string => {
    try {
      return SpiffeId.parse(v).toString();
    } catch (err) {
      throw new Error(`must be a SPIFFE ID like spiffe://example.org/web: ${(err as Error).message} (got "${v}")`);
    }
  },
  trustDomain: (v: string): string => {
    try {
      return parseTrustDomain(v);
    } catch (err) {
      throw new Error(`must be a trust domain name like example.org: ${(err as Error).message} (got "${v}")`);
    }
  },
  hostPort: (v: string): string => {
    const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(v);
    if (!m || Number(m[3]) > 65535) throw new Error(`must be HOST:PORT like 127.0.0.1:8080 or [::1]:8080 (got "${v}")`);
    return v;
  },
  url: (v: string): string => {
    let u: URL;
    try {
      u = new URL(v);
    } catch {
      throw new Error(`must be an http:// or https:// URL (got "${v}")`);
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error(`must be an http:// or https:// URL (got "${v}")`);
    return v;
  },
  pageSize: (v: string): string => {
    if (!/^\d+$/.test(v) || Number(v) < 1 || Number(v) > 500) throw new Error(`must be a number from 1 to 500 (got "${v}")`);
    return String(Number(v));
  },
  /** Serial numbers are lowercase hex everywhere Cairn prints them; either case is accepted. */
  serial: (v: string): string => {
    const hex = v.replace(/^0x/i, '').replace(/:/g, '');
    if (!/^[0-9a-fA-F]{1,40}$/.test(hex)) throw new Error(`must be a hexadecimal serial number like 4f1c…, either case (got "${v}")`);
    return hex.toLowerCase();
  },
  selector: (v: string): string => {
    // The CA's rule (ca/entries/validation.ts): a lowercase type, a colon, a value.
    if (!/^[a-z0-9_-]{1,64}:.{1,1024}$/s.test(v)) throw new Error(`must be type:value with a lowercase type, like unix:uid:1000 or k8s:ns:shop (got "${v}")`);
    return v;
  },
  nonEmpty: (v: string): string => {
    if (v.trim() === '') throw new Error('must not be empty');
    return v;
  },
};

// ---- did you mean -----------------------------------------------------------------------------------

/** Optimal string alignment distance (Damerau–Levenshtein with adjacent transpositions). */
export function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, d[i - 2]![j - 2]! + 1);
      d[i]![j] = v;
    }
  }
  return d[a.length]![b.length]!;
}

/** The known name closest to `typed`: a small edit away, or the only one it is a prefix of. */
export function closest(typed: string, known: Iterable<string>): string | undefined {
  const names = [...known];
  const t = typed.toLowerCase();
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const name of names) {
    const dist = editDistance(t, name);
    if (dist < bestDistance) [best, bestDistance] = [name, dist];
  }
  if (best !== undefined && bestDistance < t.length && bestDistance <= Math.max(1, Math.min(3, Math.floor(t.length / 3)))) return best;
  const prefixed = names.filter((n) => t.length >= 2 && n.startsWith(t));
  return prefixed.length === 1 ? prefixed[0] : undefined;
}

export const didYouMean = (typed: string, known: Iterable<string>, prefix = ''): string => {
  const match = closest(typed, known);
  return match === undefined ? '' : ` (did you mean ${prefix}${match}?)`;
};

// ---- parsing ----------------------------------------------------------------------------------------

const HELP_FLAG: FlagSpec = { type: 'boolean', short: 'h', description: 'show this help' };

/** A config file's contents, by flag name: strings, booleans or lists, as the flag's type says. */
export type ConfigValues = Readonly<Record<string, string | boolean | readonly string[]>>;

export interface ParseContext {
  /** The command's path, `trust-domain update`. */
  readonly path: string;
  /** Commands beside this one in its group, to tell "that flag belongs to …". */
  readonly siblings?: readonly CommandSpec[];
  readonly env?: NodeJS.ProcessEnv;
  /** Loads `--config FILE` (only consulted when the table declares `config`). */
  readonly loadConfig?: (file: string, table: FlagTable) => Promise<ConfigValues>;
}

/** A boolean environment variable: 1/true/yes/on or 0/false/no/off (any case); anything else is a mistake. */
function envBoolean(text: string, name: string): boolean {
  if (/^(1|true|yes|on)$/i.test(text)) return true;
  if (/^(0|false|no|off)$/i.test(text)) return false;
  throw new ConfigError(`${name} must be 1 or 0 (true/false), got "${text}"`);
}

/** Did the user ask for help anywhere before a `--` terminator? */
export function wantsHelp(argv: readonly string[]): boolean {
  for (const a of argv) {
    if (a === '--') return false;
    if (a === '--help' || a === '-h') return true;
  }
  return false;
}

function unknownFlag(original: string, spec: CommandSpec, ctx: ParseContext): UsageError {
  const shown = original.split('=')[0]!;
  const name = shown.replace(/^--?/, '');
  const reason = spec.refuse?.[name];
  if (reason !== undefined) return new UsageError(`${shown} ${reason}`, ctx.path);
  // `-json`: one dash where two were meant.
  const known = [...Object.keys(spec.flags), 'help'];
  if (!shown.startsWith('--') && name.length > 1 && known.includes(name)) return new UsageError(`unknown flag ${shown} (did you mean --${name}?)`, ctx.path);
  const owner = ctx.siblings?.find((s) => s !== spec && name in s.flags);
  if (owner) {
    const group = ctx.path.split(' ').slice(0, -1).join(' ');
    return new UsageError(`unknown flag ${shown} for ${ctx.path} (it is a flag of ${group} ${owner.name})`, ctx.path);
  }
  return new UsageError(`unknown flag ${shown}${didYouMean(name, known, '--')}`, ctx.path);
}

/**
 * Parses a command line against a command's flag table, the config file and the environment. Every
 * problem is a UsageError naming the flag as the user typed it; the API never sees a malformed value.
 */
export async function parseCommand<T extends FlagTable>(spec: CommandSpec<T>, argv: readonly string[], ctx: ParseContext): Promise<Parsed<T>> {
  const table: FlagTable = spec.flags;
  const options: Record<string, { type: 'string' | 'boolean'; short?: string; multiple?: boolean }> = { help: { type: 'boolean', short: 'h' } };
  for (const [name, f] of Object.entries(table)) options[name] = { type: f.type, ...(f.short ? { short: f.short } : {}), ...(f.multiple ? { multiple: true } : {}) };
  // Not strict: the tokens let us say which flag is wrong, and how, in our own words.
  const { tokens } = parseArgs({ args: [...argv], options, strict: false, allowPositionals: true, tokens: true });
  const given = new Map<string, string | boolean | string[]>();
  const positionals: string[] = [];
  const shorts = new Map(Object.entries(table).filter(([, f]) => f.short).map(([n, f]) => [f.short!, n]));
  for (const token of tokens) {
    if (token.kind === 'positional') {
      positionals.push(token.value);
      continue;
    }
    if (token.kind !== 'option') continue;
    const original = argv[token.index] ?? token.rawName;
    const name = token.rawName.startsWith('--') ? token.name : shorts.get(token.name) ?? (token.name === 'h' ? 'help' : undefined);
    if (name === 'help') continue;
    const f = name === undefined ? undefined : table[name];
    if (!f || (!token.rawName.startsWith('--') && original !== token.rawName)) throw unknownFlag(original, spec, ctx);
    const flag = token.rawName;
    let value: string | boolean;
    if (f.type === 'boolean') {
      if (token.value === undefined) value = true;
      else if (token.value === 'true' || token.value === 'false') value = token.value === 'true';
      else throw new UsageError(`${flag} takes no value (write ${flag}, or ${flag}=false)`, ctx.path);
    } else {
      if (token.value === undefined) throw new UsageError(`${flag} needs a value${f.value ? ` (${f.value})` : ''}`, ctx.path);
      if (!token.inlineValue && token.value.startsWith('-') && token.value.length > 1) {
        const next = token.value.replace(/^--?/, '').split('=')[0]!;
        const hint = next in table || next === 'help' ? ` before ${token.value}` : `; to give a value that starts with "-", write ${flag}=${token.value}`;
        throw new UsageError(`${flag} needs a value${f.value ? ` (${f.value})` : ''}${hint}`, ctx.path);
      }
      value = token.value;
    }
    if (f.multiple) {
      const list = (given.get(name!) as string[] | undefined) ?? [];
      list.push(value as string);
      given.set(name!, list);
    } else {
      if (given.has(name!)) throw new UsageError(`${flag} given more than once (it takes one value)`, ctx.path);
      given.set(name!, value);
    }
  }

  // Flags, then the config file, then the environment, then defaults.
  let config: ConfigValues = {};
  if ('config' in table && typeof given.get('config') === 'string') {
    if (!ctx.loadConfig) throw new TypeError(`${ctx.path}: a config flag without a loader`);
    try {
      config = await ctx.loadConfig(given.get('config') as string, table);
    } catch (err) {
      if (err instanceof UsageError) err.command ??= ctx.path;
      throw err;
    }
  }
  const env = ctx.env ?? process.env;
  const values: Record<string, unknown> = {};
  const sources: Record<string, string> = {};
  for (const [name, f] of Object.entries(table)) {
    let v: unknown;
    let where = `--${name}`;
    if (given.has(name)) v = given.get(name);
    else if (name in config) {
      v = config[name];
      where = `${name} in ${String(given.get('config'))}`;
    } else {
      const e = (f.env ?? []).find((n) => env[n]);
      if (e !== undefined) {
        const text = env[e]!;
        v = f.multiple ? [text] : f.type === 'boolean' ? envBoolean(text, e) : text;
        where = e;
      } else v = f.default;
    }
    if (v !== undefined && v !== f.default) sources[name] = where;
    if (v === undefined) {
      if (f.required && !(f.requiredUnless !== undefined && given.has(f.requiredUnless))) throw new UsageError(`${ctx.path} needs --${name}${f.value ? ` ${f.value}` : ''} (${f.description})`, ctx.path);
      continue;
    }
    const checkOne = (s: string): string => {
      if (f.choices && !f.choices.includes(s)) throw new UsageError(`${where} must be one of ${f.choices.join(', ')} (got "${s}")${didYouMean(s, f.choices)}`, ctx.path);
      if (!f.check) return s;
      try {
        return f.check(s, where);
      } catch (err) {
        if (err instanceof ConfigError) throw err;
        throw new UsageError(`${where} ${(err as Error).message}`, ctx.path);
      }
    };
    if (typeof v === 'string') v = checkOne(v);
    else if (Array.isArray(v)) v = v.map((s: string) => checkOne(s));
    values[name] = v;
  }

  const pos = spec.positionals ?? [];
  const variadic = pos.some((p) => p.variadic);
  if (!variadic && positionals.length > pos.length) {
    const extra = positionals[pos.length]!;
    const hint = extra.startsWith('-') ? '' : pos.length === 0 ? ` (${ctx.path} takes no arguments)` : ` (${ctx.path} takes ${pos.map((p) => p.name).join(' ')})`;
    throw new UsageError(`unexpected argument "${extra}"${hint}`, ctx.path);
  }
  const checked = positionals.map((value, i) => {
    const p = pos[Math.min(i, pos.length - 1)]!;
    if (p.choices && !p.choices.includes(value)) throw new UsageError(`${p.name} must be ${p.choices.join(' or ')} (got "${value}")${didYouMean(value, p.choices)}`, ctx.path);
    if (!p.check) return value;
    try {
      return p.check(value, p.name);
    } catch (err) {
      if (err instanceof ConfigError) throw err;
      throw new UsageError(`${p.name} ${(err as Error).message}`, ctx.path);
    }
  });
  const missing = pos.find((p, i) => p.required && checked[i] === undefined);
  if (missing) throw new UsageError(`${ctx.path} needs ${missing.name} (${missing.description})`, ctx.path);
  return { values: values as Values<T>, sources, positionals: checked, command: ctx.path };
}

/** For rules a table cannot state: at least one of these flags. */
export function requireOneOf(values: Readonly<Record<string, unknown>>, names: readonly string[], path: string): void {
  if (names.some((n) => values[n] !== undefined)) return;
  throw new UsageError(`${path} needs at least one of ${names.map((n) => `--${n}`).join(', ')}`, path);
}

/** For rules a table cannot state: not both. */
export function refuseTogether(values: Readonly<Record<string, unknown>>, a: string, b: string, path: string): void {
  if (values[a] !== undefined && values[b] !== undefined) throw new UsageError(`--${a} and --${b} cannot be used together`, path);
}

/** The part of an API field → flag map that concerns a command: the fields of flags it has. */
export function apiFieldsFor(table: FlagTable, fields: Readonly<Record<string, string>>): Record<string, string> {
  return Object.fromEntries(Object.entries(fields).filter(([, flag]) => flag in table));
}

/** A 400 message that names an API field names the flag that sets it instead. */
export function translateApiMessage(message: string, fields: Readonly<Record<string, string>> | undefined): string {
  if (!fields) return message;
  let out = message.replace(/\b(?:body|querystring|params) must have required property '(\w+)'/g, (all, field: string) => (fields[field] ? `--${fields[field]} is required` : all));
  // Where the API names a field: "body/ttlSeconds …", a camelCase name anywhere, or a message that
  // starts with the field ('selector "x": …'). An English word in prose ("k8s_psat selectors are …")
  // is left alone.
  for (const [field, flag] of Object.entries(fields)) {
    out = out.replace(new RegExp(`\\b(?:body|querystring|params)[/.]${field}(?![\\w-])`, 'g'), `--${flag}`);
    out = out.replace(new RegExp(/[A-Z]/.test(field) ? `(?<![\\w-])${field}(?![\\w-])` : `^${field}(?![\\w-])`, 'g'), `--${flag}`);
  }
  return out;
}

// ---- usage ------------------------------------------------------------------------------------------

const valueName = (f: FlagSpec): string => f.value ?? (f.choices ? f.choices.join('|') : 'VALUE');

function flagLabel(name: string, f: FlagSpec): string {
  const short = f.short ? `-${f.short}, ` : '';
  return `${short}--${name}${f.type === 'string' ? ` ${valueName(f)}` : ''}`;
}

function flagNotes(f: FlagSpec): string {
  const notes: string[] = [];
  if (f.required) notes.push(f.requiredUnless ? `required unless --${f.requiredUnless}` : 'required');
  if (f.multiple) notes.push('repeatable');
  if (f.default !== undefined && f.default !== false) notes.push(`default ${String(f.default)}`);
  if (f.env?.length) notes.push(`env ${f.env.join(' or ')}`);
  return notes.length ? ` (${notes.join('; ')})` : '';
}

function columns(rows: readonly (readonly [string, string])[]): string {
  const width = Math.min(30, Math.max(...rows.map(([a]) => a.length)));
  return rows.map(([a, b]) => (a.length > width ? `  ${a}\n  ${''.padEnd(width)}  ${b}` : `  ${a.padEnd(width)}  ${b}`)).join('\n');
}

/** The one-line synopsis: required flags spelled out, the rest as [flags]. */
export function synopsis(path: string, spec: CommandSpec): string {
  const required = Object.entries(spec.flags).filter(([, f]) => f.required).map(([n, f]) => `${flagLabel(n, f)}${f.multiple ? ' …' : ''}`);
  const pos = (spec.positionals ?? []).map((p) => (p.required ? p.name : `[${p.name}]`) + (p.variadic ? ' …' : ''));
  const optional = Object.values(spec.flags).some((f) => !f.required) ? ['[flags]'] : [];
  return ['cairn', path, ...pos, ...required, ...optional].join(' ');
}

export function commandUsage(path: string, spec: CommandSpec): string {
  const out = [`Usage: ${synopsis(path, spec)}`, '', spec.description ?? capitalize(spec.summary) + '.'];
  if (spec.positionals?.length) out.push('', 'Arguments:', columns(spec.positionals.map((p) => [p.name, p.description + (p.choices ? ` (${p.choices.join(' or ')})` : '')])));
  const rows: [string, string][] = Object.entries(spec.flags).map(([n, f]) => [flagLabel(n, f), f.description + flagNotes(f)]);
  rows.push([flagLabel('help', HELP_FLAG), HELP_FLAG.description]);
  out.push('', 'Flags:', columns(rows));
  if (spec.examples?.length) out.push('', 'Examples:', ...spec.examples.map((e) => `  ${e}`));
  return out.join('\n');
}

export function groupUsage(path: string, spec: GroupSpec): string {
  const out = [`Usage: cairn ${path} <command> [flags]`, '', spec.description ?? capitalize(spec.summary) + '.', '', 'Commands:'];
  out.push(columns(spec.commands.map((c) => [c.name, c.summary])));
  out.push('', `Run 'cairn ${path} <command> --help' for a command's flags.`);
  return out.join('\n');
}

export function overview(specs: readonly Spec[]): string {
  return [
    'cairn — a SPIFFE identity authority: CA server, node agent, Workload API',
    '',
    'Usage: cairn <command> [flags]',
    '',
    'Commands:',
    columns(specs.map((s) => [s.name, s.summary])),
    '',
    "Run 'cairn help <command>' or 'cairn <command> --help' for its commands and flags.",
  ].join('\n');
}

const capitalize = (s: string): string => s.charAt(0).toUpperCase() + s.slice(1);
