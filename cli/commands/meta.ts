import { commandUsage, groupUsage, isGroup, overview, type Parsed } from '../flags.js';
import { COMMANDS, resolve } from '../registry.js';
import type { NO_FLAGS } from '../specs/meta.js';

const output = (text: string): void => void process.stdout.write(text.endsWith('\n') ? text : text + '\n');

/** `cairn help [COMMAND …]`: the same text as `cairn COMMAND … --help`. */
export async function helpCommand({ positionals }: Parsed<typeof NO_FLAGS>): Promise<void> {
  if (positionals.length === 0) return output(overview(COMMANDS));
  // Words past a command (`help trust-domain create NAME`) are its arguments: resolve stops before them.
  const { spec, path } = resolve(positionals);
  output(isGroup(spec) ? groupUsage(path.join(' '), spec) : commandUsage(path.join(' '), spec));
}
