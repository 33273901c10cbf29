/**
 * What a cgroup path says about who runs in it, from the names container
 * runtimes and the kubelet give their cgroups under the systemd and cgroupfs
 * drivers. Pure: a path in, what its names tell out; nothing is looked up.
 *
 *   docker       system.slice/docker-<id>.scope          /docker/<id>
 *   containerd   …/cri-containerd-<id>.scope              /<namespace>/<id> (ctr)
 *   CRI-O        …/crio-<id>.scope, crio-conmon-<id>.scope  …/crio-<id>
 *   podman       machine.slice/libpod-<id>.scope         /libpod_parent/libpod-<id>
 *   kubepods     [prefix/]kubepods.slice/kubepods-<qos>.slice/kubepods-<qos>-pod<uid_with_underscores>.slice/…
 *                /kubepods/<qos>/pod<uid>/<id>   (guaranteed pods have no <qos> level)
 */

export type Runtime = 'docker' | 'containerd' | 'cri-o' | 'podman';
export type QosClass = 'guaranteed' | 'burstable' | 'besteffort';

export interface PathFacts {
  /** The runtime whose naming the path follows, when it says. */
  readonly runtime?: Runtime;
  /** The container id the path names (for a kubepods cgroupfs path, the runtime is not named). */
  readonly containerId?: string;
  /** The cgroup is the runtime's monitor process of the container (conmon), not the container itself. */
  readonly monitor?: boolean;
  /** containerd namespace of a `ctr` container (`/<namespace>/<id>`). */
  readonly containerdNamespace?: string;
  /** Kubernetes pod UID, with dashes. */
  readonly podUid?: string;
  readonly qos?: QosClass;
}

/** Full container ids are 64 hex digits for docker, containerd's CRI, CRI-O and podman. */
const HEX_ID = /^[0-9a-f]{64}$/;
/** What a `ctr run` id may be (containerd's identifier rule: letters, digits, `._-`, up to 76). */
const CTR_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,75}$/;
const POD_UID = /^[0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12}$/;

/** systemd-driver scope names: `<prefix><id>.scope`, the prefix naming the runtime. */
const SCOPES: ReadonlyArray<{ prefix: string; runtime: Runtime; monitor?: true }> = [
  { prefix: 'cri-containerd-', runtime: 'containerd' },
  { prefix: 'crio-conmon-', runtime: 'cri-o', monitor: true },
  { prefix: 'crio-', runtime: 'cri-o' },
  { prefix: 'libpod-conmon-', runtime: 'podman', monitor: true },
  { prefix: 'libpod-', runtime: 'podman' },
  { prefix: 'docker-', runtime: 'docker' },
];

/** cgroupfs-driver parents that hold containers by bare id. */
const PARENTS: ReadonlyArray<{ dir: string; runtime: Runtime }> = [{ dir: 'docker', runtime: 'docker' }];

/**
 * containerd namespaces whose `ctr` containers sit at `/<namespace>/<id>`;
 * any other two-level path is not taken for one (too many things look like it).
 */
export const DEFAULT_CONTAINERD_NAMESPACES: readonly string[] = ['default'];

/** One component as a runtime's container, by the systemd and cgroupfs names. */
function containerOf(name: string): { runtime: Runtime; id: string; monitor?: true } | undefined {
  for (const s of SCOPES) {
    if (!name.startsWith(s.prefix)) continue;
    const id = name.slice(s.prefix.length).replace(/\.scope$/, '');
    if (HEX_ID.test(id)) return { runtime: s.runtime, id, ...(s.monitor ? { monitor: s.monitor } : {}) };
  }
  return undefined;
}

function podOf(name: string): { uid: string; qos?: QosClass } | undefined {
  // systemd: kubepods-burstable-pod<uid>.slice, kubepods-pod<uid>.slice; cgroupfs: pod<uid>
  const m = /^(?:(?:kubelet-)?kubepods-(?:(burstable|besteffort)-)?)?pod([0-9a-f_-]{36})(?:\.slice)?$/.exec(name);
  if (!m || !POD_UID.test(m[2]!)) return undefined;
  return { uid: m[2]!.replace(/_/g, '-'), ...(m[1] ? { qos: m[1] as QosClass } : {}) };
}

/**
 * What the path's names say. `path` is relative to the cgroup2 mount, with
 * or without a leading slash. A nested cgroup inside a container (systemd in
 * the container, runc's sub-cgroups) keeps the container's identity: the
 * deepest container name wins, the pod from wherever it sits above.
 */
export function parseCgroupPath(path: string, containerdNamespaces: readonly string[] = DEFAULT_CONTAINERD_NAMESPACES): PathFacts {
  const parts = path.split('/').filter((p) => p.length > 0);
  let runtime: Runtime | undefined;
  let containerId: string | undefined;
  let monitor = false;
  let containerdNamespace: string | undefined;
  let podUid: string | undefined;
  let qos: QosClass | undefined;
  let podAt = -1;
  // The kubelet's tree may sit below a prefix (kind nodes: kubelet.slice/kubelet-kubepods.slice).
  const kubeAt = parts.findIndex((p) => /^(?:kubelet-)?kubepods(?:\.slice)?$/.test(p));

  for (let i = 0; i < parts.length; i++) {
    const name = parts[i]!;
    const pod = kubeAt >= 0 && i > kubeAt ? podOf(name) : undefined;
    if (pod) {
      podUid = pod.uid;
      podAt = i;
      // Guaranteed pods sit straight under kubepods; the others under their class's level.
      qos = pod.qos ?? (parts[i - 1] === 'burstable' || parts[i - 1] === 'besteffort' ? (parts[i - 1] as QosClass) : 'guaranteed');
      continue;
    }
    const c = containerOf(name);
    if (c) {
      runtime = c.runtime;
      containerId = c.id;
      monitor = c.monitor === true;
      continue;
    }
    // cgroupfs: /docker/<id>, /libpod_parent/libpod-<id> (containerOf), kubepods/…/pod<uid>/<id>
    const parent = PARENTS.find((p) => p.dir === parts[i - 1]);
    if (parent && HEX_ID.test(name)) {
      runtime = parent.runtime;
      containerId = name;
      monitor = false;
      continue;
    }
    if (podAt >= 0 && i === podAt + 1 && !containerId && HEX_ID.test(name)) {
      containerId = name;
      continue;
    }
  }
  // ctr's default cgroup: /<namespace>/<id>, only for namespaces we were told of.
  if (!containerId && parts.length === 2 && containerdNamespaces.includes(parts[0]!) && CTR_ID.test(parts[1]!)) {
    runtime = 'containerd';
    containerId = parts[1]!;
    containerdNamespace = parts[0]!;
  }
  return {
    ...(runtime ? { runtime } : {}),
    ...(containerId ? { containerId } : {}),
    ...(monitor ? { monitor } : {}),
    ...(containerdNamespace ? { containerdNamespace } : {}),
    ...(podUid ? { podUid } : {}),
    ...(qos ? { qos } : {}),
  };
}
