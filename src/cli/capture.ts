/** `wstrace capture` and `wstrace captures`: ask the agent for a bounded tcpdump capture, list them. */
import type { Writable } from 'node:stream';
import type { Command } from 'commander';
import { z } from 'zod';
import type { Capture } from '../generated/wstrace/v1/tracer.js';
import { UserError } from '../protocol/errors.js';
import { resolveNetns } from '../kernel/index.js';
import { resolvePodNetns } from '../containers/index.js';
import { catchStopSignals } from './signals.js';
import { openSource } from './source.js';
import { clientOptions, criOptions } from './connection.js';
import { addCommand, flag, type OnAction } from './flags.js';
import { count, port } from './values.js';

export const captureOptions = z.object({
  port: flag(port.optional(), { flags: '--port <n>', help: 'local or remote TCP port' }),
  host: flag(z.string().optional(), { flags: '--host <addr>', help: 'IP address on either side' }),
  direction: flag(z.enum(['src', 'dst']).optional(), { flags: '--direction <dir>', help: 'only packets from or to host/port' }),
  durationSec: flag(count.optional(), { flags: '--duration <seconds>', help: 'seconds to capture (default 10)' }),
  packets: flag(count.optional(), { flags: '--packets <n>', help: 'packets at most' }),
  bytes: flag(count.optional(), { flags: '--bytes <n>', help: 'file size at most' }),
  snaplen: flag(count.optional(), { flags: '--snaplen <n>', help: 'bytes kept per packet (default 128)' }),
  preSec: flag(count.optional(), { flags: '--pre <seconds>', help: "keep the seconds before now, from the agent's pre-trigger ring" }),
  netns: flag(z.string().optional(), { flags: '--netns <name|path>', help: 'capture in this network namespace (in-process agent)' }),
  pod: flag(z.string().optional(), {
    flags: '--pod <[namespace/]name>',
    help: "capture in this Kubernetes pod's network namespace, found through the container runtime's CRI socket (in-process agent)",
  }),
  ...criOptions.shape,
  json: flag(z.boolean().default(false), { flags: '--json', help: 'print the capture record as JSON' }),
  ...clientOptions.shape,
});

export type CaptureCliOptions = z.infer<typeof captureOptions>;

export const capturesOptions = z.object({
  json: flag(z.boolean().default(false), { flags: '--json', help: 'as JSON' }),
  ...clientOptions.shape,
});

function describe(c: Capture): string {
  const took = c.endedUnixMicros ? `${((c.endedUnixMicros - c.startedUnixMicros) / 1e6).toFixed(1)} s` : 'running';
  const pre = c.preSec ? `, ${c.prePackets} packets from the ${c.preSec} s before` : '';
  return c.state === 'refused'
    ? `refused: ${c.error}`
    : `${c.file} (${c.filter}; ${c.state}${c.endedBy ? `, ended by ${c.endedBy}` : ''}, ${took}, ${c.bytes} bytes${pre})${c.error ? `: ${c.error}` : ''}`;
}

export async function runCapture(opts: CaptureCliOptions, out: Writable, err: Writable): Promise<number> {
  if (opts.pod !== undefined) {
    // The pod is found on this host: a remote agent's pods are its own.
    if (opts.connect) throw new UserError('--pod is resolved on this host: run capture here without --connect, or start the remote agent with --netns.');
    if (opts.netns !== undefined) throw new UserError('give --pod or --netns, not both: a pod names its network namespace.');
    const found = await resolvePodNetns(opts.pod, opts.criSocket);
    err.write(`wstrace: pod ${found.namespace}/${found.pod}: network namespace ${found.netnsPath}\n`);
    opts = { ...opts, netns: found.netnsPath };
  }
  // Before anything loads: tcpdump would otherwise fail in nsenter, after the agent attached its BPF.
  if (opts.netns !== undefined && !opts.connect) resolveNetns(opts.netns);
  // Stop signals stop the capture, they do not abandon it. From the start: a signal while the agent loads must still close it and remove its private socket.
  const signals = catchStopSignals();
  let opened;
  try {
    opened = await openSource({
      ...(opts.connect ? { connect: opts.connect } : {}),
      tls: opts.tls,
      tracer: { ...(opts.netns !== undefined ? { netns: opts.netns } : {}), ...(opts.port ? { ports: [opts.port] } : {}) },
      ...(opts.criSocket ? { criSocket: opts.criSocket } : {}),
    });
  } catch (e) {
    signals.off();
    throw e;
  }
  const { startCapture, listCaptures } = opened.source;
  try {
    if (!startCapture || !listCaptures) throw new UserError('this source cannot capture: connect to a live agent.');
    if (signals.received()) return 1;
    let c = await startCapture({
      ...(opts.port ? { port: opts.port } : {}),
      ...(opts.host ? { host: opts.host } : {}),
      ...(opts.direction ? { direction: opts.direction } : {}),
      ...(opts.durationSec ? { durationSec: opts.durationSec } : {}),
      ...(opts.packets ? { packets: opts.packets } : {}),
      ...(opts.bytes ? { bytes: opts.bytes } : {}),
      ...(opts.snaplen ? { snaplen: opts.snaplen } : {}),
      ...(opts.preSec ? { preSec: opts.preSec } : {}),
    });
    if (c.state === 'refused') throw new UserError(`the capture was refused: ${c.error}`);
    if (opts.preSec && !c.preSec) err.write('wstrace: this agent keeps no pre-trigger ring for that port (start it with --pre and --port)\n');
    err.write(`wstrace: capturing ${c.filter} into ${c.file}\n`);
    const deadline = Date.now() + ((opts.durationSec ?? 10) + 30) * 1000;
    while (c.state === 'running' && Date.now() < deadline && !signals.received()) {
      await Promise.race([new Promise((r) => setTimeout(r, 300)), signals.stopped]);
      if (!signals.received()) c = (await listCaptures()).find((x) => x.id === c.id) ?? c;
    }
    if (signals.received() && c.state === 'running') {
      if (opened.local) {
        // Closing the in-process agent stops tcpdump: the file is flushed, closed and kept.
        await opened.close();
        c = opened.local.captures.list().find((x) => x.id === c.id) ?? c;
      } else {
        err.write(`wstrace: stopped waiting; the agent goes on capturing into ${c.file} until the capture's bounds\n`);
      }
    }
    out.write(opts.json ? `${JSON.stringify(c)}\n` : `${describe(c)}\n`);
    return c.state === 'done' ? 0 : 1;
  } finally {
    await opened.close();
    signals.off();
  }
}

export async function runCaptures(opts: z.infer<typeof capturesOptions>, out: Writable): Promise<number> {
  const opened = await openSource({ ...(opts.connect ? { connect: opts.connect } : {}), tls: opts.tls, tracer: {} });
  try {
    if (!opened.source.listCaptures) throw new UserError('this source has no captures: connect to a live agent.');
    const list = await opened.source.listCaptures();
    if (opts.json) out.write(`${JSON.stringify(list)}\n`);
    else if (list.length === 0) out.write('no captures yet\n');
    else for (const c of list) out.write(`${new Date(c.startedUnixMicros / 1000).toISOString()} ${c.trigger}${c.rule ? `:${c.rule}` : ''} ${describe(c)}\n`);
    return 0;
  } finally {
    await opened.close();
  }
}

export function registerCapture(program: Command, onAction: OnAction): void {
  addCommand(
    program,
    { name: 'capture', description: 'a bounded tcpdump capture, run by the agent (root, or --connect)', options: captureOptions },
    onAction,
    (o) => runCapture(o, process.stdout, process.stderr),
  );
}

export function registerCaptures(program: Command, onAction: OnAction): void {
  addCommand(program, { name: 'captures', description: "list the agent's captures", options: capturesOptions }, onAction, (o) =>
    runCaptures(o, process.stdout),
  );
}
