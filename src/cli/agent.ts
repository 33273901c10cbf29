/** `wstrace agent`: serve the Tracer API until SIGINT/SIGTERM, then clean up and exit 0. */
import type { Writable } from 'node:stream';
import type { Command } from 'commander';
import { z } from 'zod';
import { startAgent } from '../agent/agent.js';
import { describeControl } from '../agent/service.js';
import { formatAddress, parseListen } from '../protocol/address.js';
import { exposureWarning } from '../protocol/tls.js';
import { describeBudget, describeInfo } from './format.js';
import { catchStopSignals } from './signals.js';
import { DEFAULT_EVENT_BUDGET, resolveCgroups, resolveNetns } from '../kernel/index.js';
import { UserError } from '../protocol/errors.js';
import { DEFAULT_LIMITS } from '../agent/subscriber.js';
import { cgroupOptions, criOptions, serveOptions } from './connection.js';
import { addCommand, flag, type OnAction } from './flags.js';
import { count, eventBudget, port, repeated, ringBytes } from './values.js';

export const agentOptions = z.object({
  ...serveOptions.shape,
  allowCaptures: flag(z.boolean().default(false), {
    flags: '--allow-captures',
    help: 'let clients start captures over tcp:// (needs --tls-client-ca; only clients with its certificates), or on a unix socket opened to others',
  }),
  metrics: flag(z.string().optional(), { flags: '--metrics <host:port>', help: 'serve Prometheus metrics on http://HOST:PORT/metrics' }),
  ports: flag(repeated(port), { flags: '--port <n>', help: 'only trace this local or remote port (repeatable)' }),
  netns: flag(z.string().optional(), { flags: '--netns <name|path>', help: 'only trace this network namespace' }),
  ...cgroupOptions.shape,
  ...criOptions.shape,
  ringBytes: flag(ringBytes.optional(), { flags: '--ring-bytes <n>', help: 'kernel ring-buffer size in bytes (power of two)' }),
  eventBudget: flag(eventBudget.optional(), {
    flags: '--event-budget <n>',
    help: `events per second sent in full for the host (default ${DEFAULT_EVENT_BUDGET}); beyond it, exact per-key summaries each second; 0 sends every event (forensics)`,
  }),
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
  // Refused before anything is acquired: on a unix socket these would be ignored, and whoever gave them expects TLS.
  if (listen.kind === 'unix' && (opts.tls.cert || opts.tls.key || opts.tls.clientCa)) {
    throw new UserError(
      '--tls-cert, --tls-key and --tls-client-ca are for a tcp:// listener (a unix socket is guarded by its file mode): drop them, or listen on tcp://HOST:PORT.',
    );
  }
  if (opts.netns !== undefined) resolveNetns(opts.netns);
  resolveCgroups(opts.cgroups);
  const signals = stopped ? undefined : catchStopSignals();
  const agent = await startAgent({
    listen,
    tls: opts.tls,
    insecure: opts.insecure,
    allowCaptures: opts.allowCaptures,
    ...(opts.metrics ? { metrics: opts.metrics } : {}),
    captures: opts.captures,
    ...(opts.criSocket ? { containers: { cri: opts.criSocket } } : {}),
    ...(opts.subscriberQueue ? { limits: { ...DEFAULT_LIMITS, maxQueued: opts.subscriberQueue } } : {}),
    tracer: {
      ports: opts.ports,
      ...(opts.netns !== undefined ? { netns: opts.netns } : {}),
      ...(opts.ringBytes !== undefined ? { ringBytes: opts.ringBytes } : {}),
      ...(opts.eventBudget !== undefined ? { eventBudget: opts.eventBudget } : {}),
      ...(opts.cgroups.length ? { cgroups: opts.cgroups } : {}),
    },
  });
  // Clients cannot tell the kernel keeps only some cgroups: the operator is told here.
  const cgroupScope = agent.tracer.cgroups.length
    ? `  only sockets in cgroup ${agent.tracer.cgroups.map((c) => `${c.path} (id ${c.id})`).join(', ')} and below (filtered in the kernel)\n`
    : '';
  const warning = exposureWarning(agent.address, opts.tls, opts.insecure);
  if (warning) err.write(`wstrace agent: WARNING: ${warning}\n`);
  const metrics =
    agent.metricsPort !== undefined ? `, metrics on http://${opts.metrics!.replace(/:\d+$/, '')}:${agent.metricsPort}/metrics` : '';
  err.write(
    `wstrace agent: listening on ${formatAddress(agent.address)}${metrics}\n  ${describeControl(agent.grant)}\n  ${describeInfo(agent.info())}\n  ${describeBudget(agent.tracer.eventBudget)}\n${cgroupScope}`,
  );
  await (stopped ?? signals!.stopped);
  err.write('wstrace agent: stopping\n');
  await agent.close('agent shutting down');
  signals?.off();
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
