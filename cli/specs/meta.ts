import { command, flags } from '../flags.js';
import { JSON_OUTPUT } from './common.js';

export const NO_FLAGS = flags({});
export const VERSION_FLAGS = flags({ ...JSON_OUTPUT });

const meta = () => import('../commands/meta.js');

export const help = command({
  name: 'help',
  summary: "show a command's usage and flags: cairn help entry create",
  flags: NO_FLAGS,
  positionals: [{ name: 'COMMAND', description: 'a command, with its subcommands (e.g. trust-domain update)', variadic: true }],
  run: async (args) => (await meta()).helpCommand(args),
});

export const completion = command({
  name: 'completion',
  summary: 'print a shell completion script for bash or zsh',
  description: `Print a script that completes cairn's commands, subcommands, flags and flag values.
bash: add  source <(cairn completion bash)  to ~/.bashrc.
zsh:  add  source <(cairn completion zsh)  to ~/.zshrc after compinit, or save it as _cairn in a directory on $fpath.`,
  flags: NO_FLAGS,
  positionals: [{ name: 'SHELL', description: 'the shell', required: true, choices: ['bash', 'zsh'] }],
  run: async (args) => (await meta()).completionCommand(args),
});

export const version = command({
  name: 'version',
  summary: "print cairn's version (also cairn --version)",
  flags: VERSION_FLAGS,
  run: async (args) => (await meta()).versionCommand(args),
});
