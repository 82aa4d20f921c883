import { readFileSync } from 'node:fs';
import { isMap, isScalar, isSeq, parseDocument, type Node } from 'yaml';
import { didYouMean, UsageError, type ConfigValues, type FlagTable } from './flags.js';

/**
 * `--config FILE`: a YAML mapping whose keys are the command's flag names (without dashes). Values are
 * read as text (YAML's failsafe schema, so `yes`, `0123` or `1e3` stay what they look like) and typed by
 * the flag table: booleans are true or false, repeatable flags take a list (or one value). In every
 * value `${VAR}` expands to the environment variable (an error when unset), `${VAR:-default}` to the
 * default when VAR is unset or empty, and `$$` to a literal `$`. Expansion happens after parsing, so a
 * variable's contents can never change the file's structure.
 */
export async function loadConfigFile(file: string, table: FlagTable, env: NodeJS.ProcessEnv = process.env): Promise<ConfigValues> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new UsageError(`cannot read the config file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  return parseConfig(text, file, table, env);
}

export function parseConfig(text: string, file: string, table: FlagTable, env: NodeJS.ProcessEnv = process.env): ConfigValues {
  const doc = parseDocument(text, { schema: 'failsafe', uniqueKeys: true, prettyErrors: true });
  if (doc.errors.length > 0) throw new UsageError(`${file} is not valid YAML: ${doc.errors[0]!.message.split('\n')[0]}`);
  const root = doc.contents;
  if (root === null || (isScalar(root) && (root.value === null || root.value === ''))) return {};
  if (!isMap(root)) throw new UsageError(`${file} must be a mapping of flag names to values (like "listen: 0.0.0.0:8080")`);
  const known = Object.keys(table).filter((k) => k !== 'config');
  const out: Record<string, string | boolean | string[]> = {};
  for (const pair of root.items) {
    const key = isScalar(pair.key) ? String(pair.key.value) : String(pair.key);
    if (key === 'config') throw new UsageError(`${file}: config files do not nest (the key "config" is not allowed)`);
    const f = table[key];
    if (!f) throw new UsageError(`unknown key "${key}" in ${file}${didYouMean(key.replace(/^-+/, ''), known)}`);
    const where = `${key} in ${file}`;
    const scalar = (node: unknown): string => {
      // `key:` with nothing after it is a plain empty scalar; `key: ""` is a deliberate empty value.
      if (!isScalar(node) || node.value === null || node.value === undefined || (node.value === '' && node.type === 'PLAIN')) throw new UsageError(`${where} needs a value`);
      return expand(String(node.value), env, where);
    };
    const value = pair.value as Node | null;
    if (f.type === 'boolean') {
      const v = scalar(value);
      if (v !== 'true' && v !== 'false') throw new UsageError(`${where} must be true or false (got "${v}")`);
      out[key] = v === 'true';
    } else if (f.multiple) {
      out[key] = isSeq(value) ? value.items.map((item) => scalar(item)) : [scalar(value)];
    } else {
      if (isSeq(value) || isMap(value)) throw new UsageError(`${where} takes one value, not a ${isSeq(value) ? 'list' : 'mapping'}`);
      out[key] = scalar(value);
    }
  }
  return out;
}

/** `${VAR}`, `${VAR:-default}` and `$$`; anything else after a `$` is left alone. */
export function expand(value: string, env: NodeJS.ProcessEnv, where: string): string {
  return value.replace(/\$\$|\$\{([^}]*)\}|\$\{/g, (all: string, inner: string | undefined) => {
    if (all === '$$') return '$';
    const m = inner === undefined ? null : /^([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?$/s.exec(inner);
    if (!m) throw new UsageError(`${where}: "${all}" is not a variable reference (write \${VAR} or \${VAR:-default}, and $$ for a literal $)`);
    const [, name, fallback] = m;
    const v = env[name!];
    if (fallback !== undefined) return v === undefined || v === '' ? fallback : v;
    if (v === undefined) throw new UsageError(`${where}: environment variable ${name} is not set (write \${${name}:-default} to give a default)`);
    return v;
  });
}
