import { didYouMean, isGroup, UsageError, type CommandSpec, type GroupSpec, type Spec } from './flags.js';
import { adminGroup } from './specs/admin.js';
import { agentGroup } from './specs/agent.js';
import { attestorGroup } from './specs/attestor.js';
import { authorityGroup } from './specs/authority.js';
import { bundleGroup } from './specs/bundle.js';
import { federationGroup } from './specs/federation.js';
import { caGroup, migrate, up } from './specs/ca.js';
import { bootstrap, renew } from './specs/device.js';
import { entryGroup } from './specs/entry.js';
import { templateGroup } from './specs/template.js';
import { kekGroup } from './specs/kek.js';
import { auditGroup } from './specs/audit.js';
import { completion, help, version } from './specs/meta.js';
import { jwtGroup, svidGroup, x509Group } from './specs/svid.js';
import { tokenGroup } from './specs/token.js';
import { trustDomainGroup } from './specs/trust-domain.js';

/**
 * Every command, in the order `cairn --help` lists them. Spec modules hold only tables and text (their
 * handlers load on demand), so building this list costs no heavy import.
 */
export const COMMANDS: readonly Spec[] = [
  up,
  caGroup,
  migrate,
  agentGroup,
  trustDomainGroup,
  entryGroup,
  templateGroup,
  tokenGroup,
  x509Group,
  jwtGroup,
  svidGroup,
  attestorGroup,
  authorityGroup,
  bundleGroup,
  federationGroup,
  adminGroup,
  kekGroup,
  auditGroup,
  bootstrap,
  renew,
  help,
  completion,
  version,
];

export interface Resolved {
  readonly spec: Spec;
  /** The words naming it: ['trust-domain', 'update']. */
  readonly path: readonly string[];
  /** The arguments after those words. */
  readonly rest: readonly string[];
  /** The commands beside it in its group. */
  readonly siblings: readonly Spec[];
}

/**
 * Walks the command words of argv down the tree. Stops at a command, or at a group when the next
 * word is missing or a flag (the caller prints the group's usage); an unknown word is a usage error
 * that suggests the closest command.
 */
export function resolve(argv: readonly string[], roots: readonly Spec[] = COMMANDS): Resolved {
  let siblings = roots;
  const path: string[] = [];
  for (let i = 0; ; i++) {
    const word = argv[i]!;
    const spec = siblings.find((s) => s.name === word);
    if (!spec) {
      const names = siblings.map((s) => s.name);
      const where = path.length ? `${path.join(' ')} command` : 'command';
      const hint = didYouMean(word, names) || (path.length ? ` (${path.join(' ')} has ${names.join(', ')})` : '');
      throw new UsageError(`unknown ${where} "${word}"${hint}`, path.length ? path.join(' ') : undefined);
    }
    path.push(word);
    const next = argv[i + 1];
    if (!isGroup(spec) || next === undefined || next.startsWith('-')) return { spec, path, rest: argv.slice(i + 1), siblings };
    siblings = spec.commands;
  }
}

/** The commands of a tree, each with its path, depth first. */
export function walk(specs: readonly Spec[] = COMMANDS, prefix: readonly string[] = []): { path: string[]; spec: CommandSpec | GroupSpec }[] {
  return specs.flatMap((s) => [{ path: [...prefix, s.name], spec: s }, ...(isGroup(s) ? walk(s.commands, [...prefix, s.name]) : [])]);
}

/**
 * The flags of a command line that its command's table does not declare (or a note that the words
 * name no command): for checking command lines written elsewhere (manifests, units, scripts).
 */
export function undocumentedFlags(argv: readonly string[]): string[] {
  let found: Resolved;
  try {
    found = resolve(argv);
  } catch {
    return [`unexpected command ${argv.slice(0, 2).join(' ')}`];
  }
  if (isGroup(found.spec)) return [`unexpected command ${argv.slice(0, 2).join(' ')}`];
  const known = new Set([...Object.keys(found.spec.flags), 'help'].map((n) => `--${n}`));
  return found.rest.filter((a) => a.startsWith('--') && a !== '--').map((a) => a.split('=')[0]!).filter((a) => !known.has(a));
}
