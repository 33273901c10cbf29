/**
 * Where a client command gets its events: a remote agent (--connect), or an
 * agent started in this process on a private unix socket. Either way the
 * command is a gRPC client, so the remote path is the tested path.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startAgent, type RunningAgent } from '../agent/agent.js';
import { connectAgent, type ClientTls, type EventSource } from '../client/connect.js';
import type { TracerOptions } from '../kernel/index.js';

export interface SourceOptions {
  readonly connect?: string;
  readonly tls: ClientTls;
  /** Kernel-side filters for an in-process agent. */
  readonly tracer: TracerOptions;
  /** The CRI socket an in-process agent asks for pod and container names; default: the usual ones. */
  readonly criSocket?: string;
}

export interface OpenedSource {
  readonly source: EventSource;
  /** The in-process agent, when there is one. */
  readonly local?: RunningAgent;
  readonly where: string;
  close(message?: string): Promise<void>;
}

export async function openSource(opts: SourceOptions): Promise<OpenedSource> {
  if (opts.connect) {
    const source = connectAgent(opts.connect, opts.tls);
    return {
      source,
      where: opts.connect,
      close: async () => source.close(),
    };
  }
  const dir = mkdtempSync(join(process.env.XDG_RUNTIME_DIR ?? tmpdir(), 'wstrace-'));
  const path = join(dir, 'agent.sock');
  let local: RunningAgent;
  try {
    local = await startAgent({ listen: { kind: 'unix', path }, tracer: opts.tracer, ...(opts.criSocket ? { containers: { cri: opts.criSocket } } : {}) });
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  const source = connectAgent({ kind: 'unix', path });
  return {
    source,
    local,
    where: 'in-process agent',
    async close(message) {
      await local.close(message);
      source.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
