/** Command-line entry: parses flags, runs one command, maps errors to one sentence and an exit code. */
import { Command, InvalidArgumentError, CommanderError } from 'commander';
import { UserError } from '../kernel/index.js';
import { runWatch } from './watch.js';

function parsePort(value: string, previous: number[] | undefined): number[] {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < 1 || n > 65535) {
    throw new InvalidArgumentError('a port is a number from 1 to 65535.');
  }
  return [...(previous ?? []), n];
}

function parseSeconds(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError('give a positive number of seconds.');
  return n;
}

function parseRingBytes(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 4096 || (n & (n - 1)) !== 0 || n > 2 ** 30) {
    throw new InvalidArgumentError('the ring size is a power of two from 4096 to 1073741824 bytes.');
  }
  return n;
}

export function buildProgram(onAction: (run: () => Promise<number>) => void): Command {
  const program = new Command('wstrace')
    .description('Why is this host refusing or dropping connections? Accept queues, resets, TIME_WAIT, live from the kernel.')
    .option('--debug', 'show stack traces on errors')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();

  program
    .command('watch')
    .description('print kernel events as they happen (needs root)')
    .option('--json', 'one JSON object per line')
    .option('--duration <seconds>', 'stop after this many seconds', parseSeconds)
    .option('--port <n>', 'only events on this local or remote port (repeatable)', parsePort)
    .option('--netns <name|path>', 'only this network namespace (ip netns name or nsfs path)')
    .option('--ring-bytes <n>', 'kernel ring-buffer size in bytes (power of two)', parseRingBytes)
    .action((opts: { json?: boolean; duration?: number; port?: number[]; netns?: string; ringBytes?: number }) => {
      onAction(() =>
        runWatch(
          {
            json: opts.json ?? false,
            ports: opts.port ?? [],
            ...(opts.duration !== undefined ? { durationSec: opts.duration } : {}),
            ...(opts.netns !== undefined ? { netns: opts.netns } : {}),
            ...(opts.ringBytes !== undefined ? { ringBytes: opts.ringBytes } : {}),
          },
          { out: process.stdout, err: process.stderr },
        ),
      );
    });
  return program;
}

export async function main(argv: string[]): Promise<number> {
  let run: (() => Promise<number>) | undefined;
  const program = buildProgram((r) => (run = r));
  const debug = argv.includes('--debug');
  try {
    program.parse(argv);
    if (!run) {
      program.outputHelp();
      return 1;
    }
    return await run();
  } catch (err) {
    if (err instanceof CommanderError) {
      // Commander already printed its one line; --help and --version are not errors.
      return err.exitCode === 0 ? 0 : 1;
    }
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
