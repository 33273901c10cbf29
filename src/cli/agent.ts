/** `wstrace agent`: serve the Tracer API until SIGINT/SIGTERM, then clean up and exit 0. */
import type { Writable } from 'node:stream';
import { startAgent } from '../agent/agent.js';
import { formatAddress, parseListen } from '../protocol/address.js';
import type { TlsFiles } from '../protocol/tls.js';
import { describeInfo } from './format.js';
import { signalStop } from './signals.js';
import { DEFAULT_LIMITS } from '../agent/subscriber.js';
import type { CaptureOptions } from '../agent/captures.js';

export interface AgentCliOptions {
  readonly listen: string;
  readonly tls: TlsFiles;
  readonly insecure: boolean;
  readonly metrics?: string;
  readonly ports: number[];
  readonly netns?: string;
  readonly ringBytes?: number;
  readonly subscriberQueue?: number;
  readonly captures?: CaptureOptions;
}

export async function runAgent(opts: AgentCliOptions, err: Writable, stopped?: Promise<void>): Promise<number> {
  const listen = parseListen(opts.listen);
  const agent = await startAgent({
    listen,
    tls: opts.tls,
    insecure: opts.insecure,
    ...(opts.metrics ? { metrics: opts.metrics } : {}),
    ...(opts.captures ? { captures: opts.captures } : {}),
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
