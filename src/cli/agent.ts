/** `wstrace agent`: serve the Tracer API until SIGINT/SIGTERM, then clean up and exit 0. */
import type { Writable } from 'node:stream';
import type { Command } from 'commander';
import { z } from 'zod';
import { startAgent } from '../agent/agent.js';
import { formatAddress, parseListen } from '../protocol/address.js';
import { describeInfo } from './format.js';
import { signalStop } from './signals.js';
import { DEFAULT_LIMITS } from '../agent/subscriber.js';
import { serveOptions } from './connection.js';
import { addCommand, flag, type OnAction } from './flags.js';
import { count, port, repeated, ringBytes } from './values.js';

export const agentOptions = z.object({
  ...serveOptions.shape,
  metrics: flag(z.string().optional(), { flags: '--metrics <host:port>', help: 'serve Prometheus metrics on http://HOST:PORT/metrics' }),
  ports: flag(repeated(port), { flags: '--port <n>', help: 'only trace this local or remote port (repeatable)' }),
  netns: flag(z.string().optional(), { flags: '--netns <name|path>', help: 'only trace this network namespace' }),
  ringBytes: flag(ringBytes.optional(), { flags: '--ring-bytes <n>', help: 'kernel ring-buffer size in bytes (power of two)' }),
  subscriberQueue: flag(count.optional(), {
    flags: '--subscriber-queue <events>',
    help: 'events held for a slow client before the oldest are dropped',
  }),
  /** Shaped as the agent's CaptureOptions. */
  captures: z.object({
    rulesFile: flag(z.string().optional(), { flags: '--rules <file>', help: 'capture rules (one per line; see README)' }),
    dir: flag(z.string().default('/var/lib/wstrace/captures'), { flags: '--captures <dir>', help: 'where captures go (root-only)' }),
    preSec: flag(count.optional(), {
      flags: '--pre <seconds>',
      help: 'keep this many seconds before any trigger (rotating capture on --port ports and rule ports)',
    }),
    limits: z.object({
      maxRunning: flag(count.optional(), { flags: '--max-captures <n>', help: 'captures running at once, at most' }),
      cooldownSec: flag(count.optional(), {
        flags: '--capture-cooldown <seconds>',
        help: 'seconds before the same trigger captures again',
      }),
    }),
  }),
});

export type AgentCliOptions = z.infer<typeof agentOptions>;

export async function runAgent(opts: AgentCliOptions, err: Writable, stopped?: Promise<void>): Promise<number> {
  const listen = parseListen(opts.listen);
  const agent = await startAgent({
    listen,
    tls: opts.tls,
    insecure: opts.insecure,
    ...(opts.metrics ? { metrics: opts.metrics } : {}),
    captures: opts.captures,
    ...(opts.subscriberQueue ? { limits: { ...DEFAULT_LIMITS, maxQueued: opts.subscriberQueue } } : {}),
    tracer: {
      ports: opts.ports,
      ...(opts.netns !== undefined ? { netns: opts.netns } : {}),
      ...(opts.ringBytes !== undefined ? { ringBytes: opts.ringBytes } : {}),
    },
  });
  if (listen.kind === 'tcp' && opts.insecure && !opts.tls.cert) {
    err.write(
      `wstrace agent: WARNING: ${formatAddress(agent.address)} is plain TCP without TLS: anyone who can reach it can read kernel events.\n`,
    );
  }
  const metrics =
    agent.metricsPort !== undefined ? `, metrics on http://${opts.metrics!.replace(/:\d+$/, '')}:${agent.metricsPort}/metrics` : '';
  err.write(`wstrace agent: listening on ${formatAddress(agent.address)}${metrics}\n  ${describeInfo(agent.info())}\n`);
  await (stopped ?? signalStop());
  err.write('wstrace agent: stopping\n');
  await agent.close('agent shutting down');
  return 0;
}

export function registerAgent(program: Command, onAction: OnAction): void {
  addCommand(
    program,
    { name: 'agent', description: 'hold the BPF programs and serve events over gRPC (needs root)', options: agentOptions },
    onAction,
    (o) => runAgent(o, process.stderr),
  );
}
