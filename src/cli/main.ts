/** Command-line entry: parses flags, runs one command, maps errors to one sentence and an exit code. */
import { Command, CommanderError, type OutputConfiguration } from 'commander';
import { UserError } from '../protocol/errors.js';
import { registerAgent } from './agent.js';
import { registerCapture, registerCaptures } from './capture.js';
import { registerDoctor } from './doctor.js';
import type { OnAction } from './flags.js';
import { registerInfo } from './info.js';
import { registerExport, registerRecord, registerReport } from './record.js';
import { registerReplay } from './replay.js';
import { registerTop } from './top.js';
import { runVersion } from './version.js';
import { registerWatch } from './watch.js';

/** Every command, in the order help lists them; each declares its own flags. */
const COMMANDS = [
  registerWatch,
  registerAgent,
  registerInfo,
  registerTop,
  registerCapture,
  registerRecord,
  registerReport,
  registerReplay,
  registerExport,
  registerDoctor,
  registerCaptures,
];

/** `output` redirects what commander prints (tests read it); by default it goes to stdout and stderr. */
export function buildProgram(onAction: OnAction, output?: OutputConfiguration): Command {
  const program = new Command('wstrace')
    .description('Why is this host refusing or dropping connections? Accept queues, resets, TIME_WAIT, live from the kernel.')
    // Read from argv by main: an error can come before commander has parsed anything.
    .option('--debug', 'show stack traces on errors')
    // Handled by main, before any command: it prints what this build carries (src/cli/version.ts).
    .option('-V, --version', 'print the version, the libbpf and the BPF objects of this build')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();
  // Before the commands: each copies the program's output settings when it is added.
  if (output) program.configureOutput(output);
  for (const register of COMMANDS) register(program, onAction);
  return program;
}

export async function main(argv: string[]): Promise<number> {
  // A closed stderr (`2>&1 | head`) would end any command with an uncaught EPIPE, its private agent's
  // socket and directory left behind: what can no longer be said is dropped, and the command ends as it would.
  process.stderr.on('error', () => undefined);
  let run: (() => Promise<number>) | undefined;
  const program = buildProgram((r) => (run = r));
  const debug = argv.includes('--debug');
  try {
    const args = argv.slice(2).filter((a) => a !== '--debug');
    if (args.length === 1 && (args[0] === '-V' || args[0] === '--version')) return runVersion(process.stdout);
    program.parse(argv);
    // Commander takes program options anywhere, so `watch --version` lands here.
    if ((program.opts() as { version?: boolean }).version) {
      throw new UserError('--version takes no command or other flag: run `wstrace --version` on its own.');
    }
    if (!run) {
      program.outputHelp();
      return 1;
    }
    return await run();
  } catch (err) {
    // Commander already printed its one line; --help is exit 0, and a command may set its own usage exit (doctor: 3).
    if (err instanceof CommanderError) return err.exitCode;
    if (err instanceof UserError) {
      process.stderr.write(`wstrace: ${err.message}\n`);
      if (debug) process.stderr.write(`${err.stack}\n`);
      return err.exitCode;
    }
    const e = err as Error;
    process.stderr.write(`wstrace: ${e.message}\n`);
    if (debug) process.stderr.write(`${e.stack}\n`);
    else process.stderr.write('(run again with --debug for details)\n');
    return 1;
  }
}
