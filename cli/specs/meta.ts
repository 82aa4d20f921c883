import { command, flags } from '../flags.js';

export const NO_FLAGS = flags({});

const meta = () => import('../commands/meta.js');

export const help = command({
  name: 'help',
  summary: "show a command's usage and flags: cairn help entry create",
  flags: NO_FLAGS,
  positionals: [{ name: 'COMMAND', description: 'a command, with its subcommands (e.g. trust-domain update)', variadic: true }],
  run: async (args) => (await meta()).helpCommand(args),
});
