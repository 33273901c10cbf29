/**
 * A client of a container runtime's CRI socket (runtime.v1.RuntimeService),
 * for the names Kubernetes gives what the cgroup path only numbers: the pod,
 * its namespace, the container's name. Every call has a deadline: a stuck
 * runtime costs a late name, never a stuck agent.
 */
import { credentials, Metadata, type ServiceError } from '@grpc/grpc-js';
import {
  RuntimeServiceClient,
  type Container,
  type PodSandbox,
  type PodSandboxStatusResponse,
  type VersionResponse,
} from '../generated/cri/runtime/v1/api.js';

/** Where runtimes put their CRI socket, tried in order when none is named. */
export const DEFAULT_CRI_SOCKETS: readonly string[] = [
  '/run/containerd/containerd.sock',
  '/run/crio/crio.sock',
  '/run/cri-dockerd.sock',
];

export const DEFAULT_CRI_TIMEOUT_MS = 2000;

/** What wstrace asks a runtime; the real one is CriClient, tests may hand in another. */
export interface CriApi {
  version(): Promise<VersionResponse>;
  /** Containers, or only the one with this id (runtimes match id prefixes too). */
  listContainers(id?: string): Promise<Container[]>;
  /** Pod sandboxes, or only the one with this id. */
  listPodSandbox(id?: string): Promise<PodSandbox[]>;
  /** A sandbox's status with the runtime's details (`info`, JSON). */
  podSandboxStatus(id: string): Promise<PodSandboxStatusResponse>;
  close(): void;
}

type Unary<Req, Res> = (req: Req, md: Metadata, opts: { deadline: Date }, cb: (err: ServiceError | null, res: Res) => void) => unknown;

export class CriClient implements CriApi {
  private readonly client: RuntimeServiceClient;

  /** `socket` is a path to a unix socket; nothing connects until the first call. */
  constructor(
    readonly socket: string,
    private readonly timeoutMs = DEFAULT_CRI_TIMEOUT_MS,
  ) {
    this.client = new RuntimeServiceClient(`unix://${socket}`, credentials.createInsecure());
  }

  private call<Req, Res>(fn: Unary<Req, Res>, req: Req): Promise<Res> {
    return new Promise((resolve, reject) => {
      fn.call(this.client, req, new Metadata(), { deadline: new Date(Date.now() + this.timeoutMs) }, (err, res) => (err ? reject(err) : resolve(res)));
    });
  }

  version(): Promise<VersionResponse> {
    return this.call(this.client.version as Unary<unknown, VersionResponse>, { version: 'v1' });
  }

  async listContainers(id?: string): Promise<Container[]> {
    const req = id ? { filter: { id, podSandboxId: '' } } : {};
    const res = await this.call(this.client.listContainers as Unary<unknown, { containers: Container[] }>, req);
    return res.containers;
  }

  async listPodSandbox(id?: string): Promise<PodSandbox[]> {
    const req = id ? { filter: { id } } : {};
    const res = await this.call(this.client.listPodSandbox as Unary<unknown, { items: PodSandbox[] }>, req);
    return res.items;
  }

  podSandboxStatus(id: string): Promise<PodSandboxStatusResponse> {
    return this.call(this.client.podSandboxStatus as Unary<unknown, PodSandboxStatusResponse>, { podSandboxId: id, verbose: true });
  }

  close(): void {
    this.client.close();
  }
}

/** The pid of a sandbox's first process, from containerd's and CRI-O's verbose `info` JSON. */
export function sandboxPid(status: PodSandboxStatusResponse): number | undefined {
  for (const text of Object.values(status.info)) {
    try {
      const info = JSON.parse(text) as { pid?: unknown };
      if (typeof info.pid === 'number' && info.pid > 0) return info.pid;
    } catch {
      // Not JSON: runtimes may add plain strings; look at the next.
    }
  }
  return undefined;
}
