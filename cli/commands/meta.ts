import { cairnVersion } from '../../lib/version.js';
import { bashCompletion, zshCompletion } from '../completion.js';
import { commandUsage, groupUsage, isGroup, overview, type Parsed } from '../flags.js';
import { COMMANDS, resolve } from '../registry.js';
import type { NO_FLAGS, VERSION_FLAGS } from '../specs/meta.js';

const output = (text: string): void => void process.stdout.write(text.endsWith('\n') ? text : text + '\n');

/** `cairn help [COMMAND …]`: the same text as `cairn COMMAND … --help`. */
export async function helpCommand({ positionals }: Parsed<typeof NO_FLAGS>): Promise<void> {
  if (positionals.length === 0) return output(overview(COMMANDS));
  // Words past a command (`help trust-domain create NAME`) are its arguments: resolve stops before them.
  const { spec, path } = resolve(positionals);
  output(isGroup(spec) ? groupUsage(path.join(' '), spec) : commandUsage(path.join(' '), spec));
}

export async function completionCommand({ positionals }: Parsed<typeof NO_FLAGS>): Promise<void> {
  output(positionals[0] === 'zsh' ? zshCompletion() : bashCompletion());
}

export async function versionCommand({ values }: Parsed<typeof VERSION_FLAGS>): Promise<void> {
  // The one source of the version: the same as /healthz and the start banners.
  const v = cairnVersion();
  output(values.json ? JSON.stringify({ version: v }) : `cairn ${v}`);
}
