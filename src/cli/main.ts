/** Command-line entry: parses flags, runs one command, maps errors to one sentence and an exit code. */
import { Command, CommanderError, Option } from 'commander';
import type { EventKind } from '../signals/event.js';
import { UserError } from '../protocol/errors.js';
import { DEFAULT_SOCKET } from '../protocol/address.js';
import { runAgent } from './agent.js';
import { runCapture, runCaptures } from './capture.js';
import { DOCTOR_USAGE_EXIT, runDoctor } from './doctor.js';
import { runExport, runRecord, runReport } from './record.js';
import { parseSpeed, runReplay } from './replay.js';
import { runInfo } from './info.js';
import { registerTop } from './top.js';
import { parseCount, parseKind, parsePort, parseRingBytes, parseSeconds, parseSince } from './parse.js';
import { runWatch } from './watch.js';

interface ClientFlags {
  connect?: string;
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
  insecure?: boolean;
}

function clientOptions(cmd: Command): Command {
  return cmd
    .option('--connect <addr>', 'use a running agent: unix:/PATH or tcp://HOST:PORT (default: start one in this process)')
    .option('--tls-ca <file>', 'CA certificate that signed the agent certificate (tcp://)')
    .option('--tls-cert <file>', 'client certificate, for an agent that requires mTLS')
    .option('--tls-key <file>', 'client key, for an agent that requires mTLS')
    .option('--insecure', 'plain TCP to the agent, no TLS');
}

function tlsFrom(o: ClientFlags) {
  return {
    ...(o.tlsCa ? { ca: o.tlsCa } : {}),
    ...(o.tlsCert ? { cert: o.tlsCert } : {}),
    ...(o.tlsKey ? { key: o.tlsKey } : {}),
    ...(o.insecure ? { insecure: true } : {}),
  };
}

export function buildProgram(onAction: (run: () => Promise<number>) => void): Command {
  const program = new Command('wstrace')
    .description('Why is this host refusing or dropping connections? Accept queues, resets, TIME_WAIT, live from the kernel.')
    .option('--debug', 'show stack traces on errors')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();

  clientOptions(
    program
      .command('watch')
      .description('print kernel events as they happen (root, or --connect to an agent)')
      .option('--json', 'one JSON object per line')
      .option('--duration <seconds>', 'stop after this many seconds', parseSeconds)
      .option('--port <n>', 'only events on this local or remote port (repeatable)', parsePort)
      .option('--kind <kind>', 'only this kind of event (repeatable)', parseKind)
      .option('--netns <name|path>', 'only this network namespace (ip netns name or nsfs path)')
      .option('--last <n>', 'first print up to n recent events the agent remembers', parseCount)
      .option('--since <time>', 'first print recent events from this time (ISO 8601, or 30s, 5m, 2h ago)', (v) => parseSince(v))
      .addOption(new Option('--ring-bytes <n>', 'kernel ring-buffer size in bytes (in-process agent)').argParser(parseRingBytes)),
  ).action(
    (
      o: ClientFlags & {
        json?: boolean;
        duration?: number;
        port?: number[];
        kind?: EventKind[];
        netns?: string;
        last?: number;
        since?: number;
        ringBytes?: number;
      },
    ) => {
      onAction(() =>
        runWatch(
          {
            json: o.json ?? false,
            ports: o.port ?? [],
            kinds: o.kind ?? [],
            tls: tlsFrom(o),
            ...(o.connect !== undefined ? { connect: o.connect } : {}),
            ...(o.duration !== undefined ? { durationSec: o.duration } : {}),
            ...(o.netns !== undefined ? { netns: o.netns } : {}),
            ...(o.ringBytes !== undefined ? { ringBytes: o.ringBytes } : {}),
            ...(o.last !== undefined ? { last: o.last } : {}),
            ...(o.since !== undefined ? { sinceMs: o.since } : {}),
          },
          { out: process.stdout, err: process.stderr },
        ),
      );
    },
  );

  program
    .command('agent')
    .description('hold the BPF programs and serve events over gRPC (needs root)')
    .option('--listen <addr>', 'unix:/PATH (root-only socket) or tcp://HOST:PORT', `unix:${DEFAULT_SOCKET}`)
    .option('--tls-cert <file>', 'server certificate (PEM), required for tcp:// unless --insecure')
    .option('--tls-key <file>', 'server key (PEM)')
    .option('--tls-client-ca <file>', 'require client certificates signed by this CA (mTLS)')
    .option('--insecure', 'allow tcp:// without TLS (warned about)')
    .option('--metrics <host:port>', 'serve Prometheus metrics on http://HOST:PORT/metrics')
    .option('--port <n>', 'only trace this local or remote port (repeatable)', parsePort)
    .option('--netns <name|path>', 'only trace this network namespace')
    .option('--ring-bytes <n>', 'kernel ring-buffer size in bytes (power of two)', parseRingBytes)
    .option('--subscriber-queue <events>', 'events held for a slow client before the oldest are dropped', parseCount)
    .option('--rules <file>', 'capture rules (one per line; see README)')
    .option('--captures <dir>', 'where captures go (root-only)', '/var/lib/wstrace/captures')
    .option('--pre <seconds>', 'keep this many seconds before any trigger (rotating capture on --port ports and rule ports)', parseCount)
    .option('--max-captures <n>', 'captures running at once, at most', parseCount)
    .option('--capture-cooldown <seconds>', 'seconds before the same trigger captures again', parseCount)
    .action(
      (o: {
        rules?: string;
        captures: string;
        pre?: number;
        maxCaptures?: number;
        captureCooldown?: number;
        subscriberQueue?: number;
        listen: string;
        tlsCert?: string;
        tlsKey?: string;
        tlsClientCa?: string;
        insecure?: boolean;
        metrics?: string;
        port?: number[];
        netns?: string;
        ringBytes?: number;
      }) => {
        onAction(() =>
          runAgent(
            {
              listen: o.listen,
              tls: {
                ...(o.tlsCert ? { cert: o.tlsCert } : {}),
                ...(o.tlsKey ? { key: o.tlsKey } : {}),
                ...(o.tlsClientCa ? { clientCa: o.tlsClientCa } : {}),
              },
              insecure: o.insecure ?? false,
              ports: o.port ?? [],
              ...(o.metrics ? { metrics: o.metrics } : {}),
              ...(o.netns !== undefined ? { netns: o.netns } : {}),
              ...(o.ringBytes !== undefined ? { ringBytes: o.ringBytes } : {}),
              ...(o.subscriberQueue !== undefined ? { subscriberQueue: o.subscriberQueue } : {}),
              captures: {
                dir: o.captures,
                ...(o.rules ? { rulesFile: o.rules } : {}),
                ...(o.pre ? { preSec: o.pre } : {}),
                limits: {
                  ...(o.maxCaptures ? { maxRunning: o.maxCaptures } : {}),
                  ...(o.captureCooldown ? { cooldownSec: o.captureCooldown } : {}),
                },
              },
            },
            process.stderr,
          ),
        );
      },
    );

  clientOptions(
    program.command('info').description('what the agent is, and which hooks are live on this kernel').option('--json', 'as JSON'),
  ).action((o: ClientFlags & { json?: boolean }) => {
    onAction(() =>
      runInfo(
        { json: o.json ?? false, tls: tlsFrom(o), ...(o.connect !== undefined ? { connect: o.connect } : {}) },
        process.stdout,
      ),
    );
  });
  registerTop(program, onAction);
  clientOptions(
    program
      .command('capture')
      .description('a bounded tcpdump capture, run by the agent (root, or --connect)')
      .option('--port <n>', 'local or remote TCP port', (v) => parsePort(v, undefined)[0]!)
      .option('--host <addr>', 'IP address on either side')
      .addOption(new Option('--direction <dir>', 'only packets from or to host/port').choices(['src', 'dst']))
      .option('--duration <seconds>', 'seconds to capture (default 10)', parseCount)
      .option('--packets <n>', 'packets at most', parseCount)
      .option('--bytes <n>', 'file size at most', parseCount)
      .option('--snaplen <n>', 'bytes kept per packet (default 128)', parseCount)
      .option('--pre <seconds>', "keep the seconds before now, from the agent's pre-trigger ring", parseCount)
      .option('--netns <name|path>', 'capture in this network namespace (in-process agent)')
      .option('--json', 'print the capture record as JSON'),
  ).action(
    (
      o: ClientFlags & {
        port?: number;
        host?: string;
        direction?: string;
        duration?: number;
        packets?: number;
        bytes?: number;
        snaplen?: number;
        pre?: number;
        netns?: string;
        json?: boolean;
      },
    ) => {
      onAction(() =>
        runCapture(
          {
            tls: tlsFrom(o),
            json: o.json ?? false,
            ...(o.connect !== undefined ? { connect: o.connect } : {}),
            ...(o.port !== undefined ? { port: o.port } : {}),
            ...(o.host !== undefined ? { host: o.host } : {}),
            ...(o.direction !== undefined ? { direction: o.direction } : {}),
            ...(o.duration !== undefined ? { durationSec: o.duration } : {}),
            ...(o.packets !== undefined ? { packets: o.packets } : {}),
            ...(o.bytes !== undefined ? { bytes: o.bytes } : {}),
            ...(o.snaplen !== undefined ? { snaplen: o.snaplen } : {}),
            ...(o.pre !== undefined ? { preSec: o.pre } : {}),
            ...(o.netns !== undefined ? { netns: o.netns } : {}),
          },
          process.stdout,
          process.stderr,
        ),
      );
    },
  );

  clientOptions(
    program
      .command('record')
      .description('record events and per-second snapshots to a file, for replay and report')
      .requiredOption('-o, --out <file>', 'the recording file')
      .option('--duration <seconds>', 'stop after this many seconds', parseSeconds)
      .option('--max-size <bytes>', 'cap each file at this many bytes', parseCount)
      .option('--rotate <n>', 'at the cap, keep going and keep n older parts (FILE.1 …)', parseCount)
      .option('--port <n>', 'only events on this local or remote port (repeatable)', parsePort)
      .option('--kind <kind>', 'only this kind of event (repeatable)', parseKind)
      .option('--netns <name|path>', 'only this network namespace'),
  ).action(
    (o: ClientFlags & { out: string; duration?: number; maxSize?: number; rotate?: number; port?: number[]; kind?: EventKind[]; netns?: string }) => {
      onAction(() =>
        runRecord(
          {
            out: o.out,
            ports: o.port ?? [],
            kinds: o.kind ?? [],
            tls: tlsFrom(o),
            ...(o.connect !== undefined ? { connect: o.connect } : {}),
            ...(o.duration !== undefined ? { durationSec: o.duration } : {}),
            ...(o.maxSize !== undefined ? { maxSize: o.maxSize } : {}),
            ...(o.rotate !== undefined ? { rotate: o.rotate } : {}),
            ...(o.netns !== undefined ? { netns: o.netns } : {}),
          },
          process.stderr,
        ),
      );
    },
  );

  program
    .command('report')
    .description('the incident in one page, from a recording (no root needed)')
    .argument('<file>', 'a recording made by wstrace record')
    .option('--json', 'the same, as data')
    .action((file: string, o: { json?: boolean }) => onAction(async () => runReport(file, o.json ?? false, process.stdout)));

  program
    .command('replay')
    .description('a recording in the top screen (space pause, ] [ step, j worst second, q quit); no root needed')
    .argument('<file>', 'a recording made by wstrace record')
    .option('--speed <x>', 'how fast the recording plays (2, 10x …)', '1')
    .action((file: string, o: { speed: string }) =>
      onAction(() =>
        runReplay(file, { speed: parseSpeed(o.speed), window: 10 }, { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr }),
      ),
    );

  program
    .command('export')
    .description('the events of a recording as JSON lines, as watch --json prints them')
    .argument('<file>', 'a recording made by wstrace record')
    .option('--ndjson', 'JSON lines (the only format for now)')
    .action((file: string) => onAction(async () => runExport(file, process.stdout)));

  clientOptions(
    program
      .command('doctor')
      .description('check the capacity settings against the live host; exit 0 ok, 1 warnings, 2 failures, 3 bad usage')
      .option('--json', 'the findings as JSON')
      .option('--port <n>', 'only listeners on this port (repeatable)', parsePort)
      .option('--pid <pid>', 'only listeners of this process', parseCount)
      .option('--netns <name|path>', 'check this network namespace')
      .option('--write <file>', 'also write the sysctl fixes as a sysctl.d drop-in'),
  ).action((o: ClientFlags & { json?: boolean; port?: number[]; pid?: number; netns?: string; write?: string }) => {
    onAction(() =>
      runDoctor(
        {
          json: o.json ?? false,
          ports: o.port ?? [],
          tls: tlsFrom(o),
          ...(o.pid !== undefined ? { pid: o.pid } : {}),
          ...(o.netns !== undefined ? { netns: o.netns } : {}),
          ...(o.connect !== undefined ? { connect: o.connect } : {}),
          ...(o.write !== undefined ? { write: o.write } : {}),
        },
        process.stdout,
      ),
    );
  });

  clientOptions(program.command('captures').description("list the agent's captures").option('--json', 'as JSON')).action(
    (o: ClientFlags & { json?: boolean }) => {
      onAction(() =>
        runCaptures({ json: o.json ?? false, tls: tlsFrom(o), ...(o.connect !== undefined ? { connect: o.connect } : {}) }, process.stdout),
      );
    },
  );
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
      // doctor's exit codes 1 and 2 are findings, so its bad usage is 3.
      return err.exitCode === 0 ? 0 : argv[2] === 'doctor' ? DOCTOR_USAGE_EXIT : 1;
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
