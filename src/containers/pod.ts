/**
 * `--pod [NAMESPACE/]NAME`: the pod's network namespace, found through the
 * runtime's CRI (its sandbox's first process), for commands that work inside
 * one (`capture --pod`). Every way it can fail is one sentence.
 */
import { UserError } from '../protocol/errors.js';
import { DEFAULT_CRI_SOCKETS } from './cri.js';
import { ContainerResolver } from './resolver.js';

export interface PodNetns {
  readonly pod: string;
  readonly namespace: string;
  /** /proc/PID/ns/net of the sandbox's first process. */
  readonly netnsPath: string;
}

export async function resolvePodNetns(spec: string, criSocket?: string): Promise<PodNetns> {
  const slash = spec.indexOf('/');
  const namespace = slash >= 0 ? spec.slice(0, slash) : undefined;
  const name = slash >= 0 ? spec.slice(slash + 1) : spec;
  if (!name || namespace === '') throw new UserError(`give the pod as NAME or NAMESPACE/NAME (not "${spec}").`);
  const where = criSocket ?? 'the usual CRI sockets';
  const resolver = new ContainerResolver({ cri: criSocket ?? undefined, criRetryMs: 0 });
  try {
    let pods;
    try {
      pods = await resolver.findPods(name, namespace);
    } catch (err) {
      const e = err as { details?: string; message?: string };
      throw new UserError(
        `no container runtime answered at ${where} (${e.details ?? e.message ?? String(err)}): give its CRI socket with --cri-socket (${DEFAULT_CRI_SOCKETS.join(', ')} are tried).`,
      );
    }
    const ns = namespace ? ` in namespace ${namespace}` : '';
    if (pods.length === 0) throw new UserError(`no running pod is named ${name}${ns} in the runtime at ${where}: check the name with \`kubectl get pods -A\`.`);
    if (pods.length > 1) {
      throw new UserError(`${pods.length} running pods are named ${name} (${pods.map((p) => p.namespace).join(', ')}): give it as NAMESPACE/${name}.`);
    }
    const p = pods[0]!;
    if (!p.pid) throw new UserError(`the runtime did not say which process runs pod ${p.namespace}/${p.pod}: its network namespace cannot be found.`);
    return { pod: p.pod, namespace: p.namespace, netnsPath: `/proc/${p.pid}/ns/net` };
  } finally {
    resolver.close();
  }
}
