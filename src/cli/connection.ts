/**
 * The flags of both ends of the gRPC connection, declared once: a client's
 * (--connect and its TLS), which every command that reads an agent extends,
 * and the agent's (--listen and its TLS).
 */
import { z } from 'zod';
import { resolveCgroups } from '../kernel/index.js';
import { DEFAULT_SOCKET } from '../protocol/address.js';
import { flag } from './flags.js';

const optionalString = z.string().optional();

/** The client's TLS, shaped as protocol/tls.ts's ClientTls. */
const clientTls = z.object({
  ca: flag(optionalString, { flags: '--tls-ca <file>', help: 'CA certificate that signed the agent certificate (tcp://)' }),
  cert: flag(optionalString, { flags: '--tls-cert <file>', help: 'client certificate, for an agent that requires mTLS' }),
  key: flag(optionalString, { flags: '--tls-key <file>', help: 'client key, for an agent that requires mTLS' }),
  insecure: flag(z.boolean().optional(), { flags: '--insecure', help: 'plain TCP to the agent, no TLS' }),
});

export const clientOptions = z.object({
  connect: flag(optionalString, {
    flags: '--connect <addr>',
    help: 'use a running agent: unix:/PATH or tcp://HOST:PORT (default: start one in this process)',
  }),
  tls: clientTls,
});

/**
 * `--cgroup`, on every command that loads the BPF programs itself: the
 * kernel keeps only events of sockets in these cgroups or below them.
 */
/** The CRI socket an agent asks for pod and container names (src/containers); one declaration for every command that starts or is an agent. */
export const criOptions = z.object({
  criSocket: flag(z.string().optional(), {
    flags: '--cri-socket <path>',
    help: "the container runtime's CRI socket, for pod and container names (default: containerd's, CRI-O's or cri-dockerd's, where one exists; with --connect, the agent's own)",
  }),
});

/** --cri-socket names the runtime of an agent the command starts; a remote agent asks its own. */
export function criWithConnect(command: string): string {
  return `--cri-socket is for the agent ${command} starts itself; with --connect, give it to \`wstrace agent\`.`;
}

export const cgroupOptions = z.object({
  cgroups: flag(z.array(z.string()).default([]), {
    flags: '--cgroup <path>',
    help:
      'only sockets in this cgroup or any cgroup below it (a pod includes its containers), filtered in the kernel (with --connect, by the agent, in its hierarchy): a directory of the cgroup2 hierarchy, as a path under its mount or relative to it (repeatable, up to 8); events with no socket cgroup (timewait sockets, resets answering no socket) are left out',
  }),
});

/**
 * --cgroup is a kernel filter of the agent a command starts, resolved here so
 * a path that is not a cgroup is said before BPF is loaded. With --connect it
 * goes in the Watch request instead (EventFilter.cgroups), for the agent to
 * resolve in its own cgroup2 hierarchy.
 */
export function checkCgroups(cgroups: readonly string[], connect: string | undefined): void {
  if (cgroups.length && !connect) resolveCgroups(cgroups);
}

/** The agent's side, shaped as protocol/tls.ts's TlsFiles plus the address and the plain-TCP opt-in. */
export const serveOptions = z.object({
  listen: flag(z.string().default(`unix:${DEFAULT_SOCKET}`), {
    flags: '--listen <addr>',
    help: 'unix:/PATH (root-only socket) or tcp://HOST:PORT',
  }),
  tls: z.object({
    cert: flag(optionalString, { flags: '--tls-cert <file>', help: 'server certificate (PEM), required for tcp:// unless --insecure' }),
    key: flag(optionalString, { flags: '--tls-key <file>', help: 'server key (PEM)' }),
    clientCa: flag(optionalString, { flags: '--tls-client-ca <file>', help: 'require client certificates signed by this CA (mTLS)' }),
  }),
  insecure: flag(z.boolean().default(false), { flags: '--insecure', help: 'allow tcp:// without TLS (warned about)' }),
});
