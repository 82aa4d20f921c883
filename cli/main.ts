#!/usr/bin/env node
import { CairnError } from '../lib/errors.js';
import { CliError } from './client.js';
import { commandUsage, ConfigError, groupUsage, isGroup, overview, parseCommand, translateApiMessage, UsageError, wantsHelp, type CommandSpec } from './flags.js';
import { COMMANDS, resolve } from './registry.js';

/**
 * Commands load on demand: the registry holds only flag tables and text, and each command's handler
 * is imported when it runs, so `cairn agent start` on a node does not pay (in memory and start-up)
 * for the CA's web server, database drivers and embedded PostgreSQL.
 */
async function main(argv: string[]): Promise<number> {
  const [first] = argv;
  if (first === undefined) {
    process.stdout.write(overview(COMMANDS) + '\n');
    return 2;
  }
  if (first === '--help' || first === '-h') {
    process.stdout.write(overview(COMMANDS) + '\n');
    return 0;
  }
  if (first === '--version') argv = ['version', ...argv.slice(1)];
  let running: CommandSpec | undefined;
  let runningPath = '';
  try {
    const { spec, path, rest, siblings } = resolve(argv);
    const name = path.join(' ');
    if (isGroup(spec)) {
      if (wantsHelp(rest)) {
        process.stdout.write(groupUsage(name, spec) + '\n');
        return 0;
      }
      throw new UsageError(rest.length ? `${name} needs a command before its flags: ${spec.commands.map((c) => c.name).join(', ')}` : `${name} needs a command: ${spec.commands.map((c) => c.name).join(', ')}`, name);
    }
    // `cairn ca start --help` must explain, not start a CA.
    if (wantsHelp(rest)) {
      process.stdout.write(commandUsage(name, spec) + '\n');
      return 0;
    }
    const siblingCommands = siblings.filter((s): s is CommandSpec => !isGroup(s));
    const parsed = await parseCommand(spec, rest, {
      path: name,
      siblings: siblingCommands,
      // The YAML reader loads only for commands started with --config.
      loadConfig: async (file, table) => (await import('./config-file.js')).loadConfigFile(file, table),
    });
    running = spec;
    runningPath = name;
    await spec.run(parsed);
    return 0;
  } catch (err) {
    // A setting whose value cannot work, found before anything was opened: the message names it.
    if (err instanceof ConfigError) {
      process.stderr.write(`error: ${err.message}\n`);
      return 2;
    }
    if (err instanceof UsageError) {
      err.command ??= runningPath || undefined;
      process.stderr.write(`error: ${err.message}\n`);
      process.stderr.write(err.command ? `Run 'cairn ${err.command} --help' for usage.\n` : "Run 'cairn --help' for the commands.\n");
      return 2;
    }
    // Coded errors (the Workload API client's too, matched by name so it loads only when used).
    if (err instanceof CliError || err instanceof CairnError || (err as Error).name === 'WorkloadApiError') {
      // A 400 is about the request's fields: name the flags that set them.
      const message = (err as CliError).status === 400 ? translateApiMessage((err as Error).message, running?.apiFields) : (err as Error).message;
      process.stderr.write(`error: ${(err as CliError).code}: ${message}\n`);
      return 1;
    }
    process.stderr.write(`error: ${(err as Error).message ?? String(err)}\n`);
    return 1;
  }
}

process.exitCode = await main(process.argv.slice(2));
// Everything a command opened is closed by now; should a stray handle still hold the event loop, the
// process ends anyway rather than hang with its work done (a supervisor would see it as running).
setTimeout(() => process.exit(), 5000).unref();
