/** `wstrace info`: what the agent is and what it sees on this kernel. */
import type { Writable } from 'node:stream';
import type { Command } from 'commander';
import { z } from 'zod';
import { GetInfoResponse } from '../generated/wstrace/v1/tracer.js';
import { openSource } from './source.js';
import { describeInfo } from './format.js';
import { clientOptions } from './connection.js';
import { addCommand, flag, type OnAction } from './flags.js';

export const infoOptions = z.object({
  json: flag(z.boolean().default(false), { flags: '--json', help: 'as JSON' }),
  ...clientOptions.shape,
});

export async function runInfo(opts: z.infer<typeof infoOptions>, out: Writable): Promise<number> {
  const opened = await openSource({ ...(opts.connect ? { connect: opts.connect } : {}), tls: opts.tls, tracer: {} });
  try {
    const info = await opened.source.info();
    if (opts.json) {
      out.write(`${JSON.stringify(GetInfoResponse.toJSON(info))}\n`);
      return 0;
    }
    const started = new Date(info.startTimeUnixMicros / 1000).toISOString();
    out.write(
      [
        `wstrace ${info.version} on ${info.hostname}, Linux ${info.kernel}`,
        `agent pid ${info.pid}, started ${started}${opened.local ? ' (in-process)' : ''}`,
        `tracing ${info.netns ? `netns ${info.netns}` : 'all network namespaces'}, ${info.ports.length ? `ports ${info.ports.join(',')}` : 'all ports'}`,
        // Per caller: the same agent may let its unix socket start captures and a TCP client only read.
        `control: ${info.controlAllowed ? 'this client may start captures' : 'off for this client: it may read events, not start captures'}`,
        describeInfo(info),
      ].join('\n  ') + '\n',
    );
    return 0;
  } finally {
    await opened.close();
  }
}

export function registerInfo(program: Command, onAction: OnAction): void {
  addCommand(
    program,
    { name: 'info', description: 'what the agent is, and which hooks are live on this kernel', options: infoOptions },
    onAction,
    (o) => runInfo(o, process.stdout),
  );
}
