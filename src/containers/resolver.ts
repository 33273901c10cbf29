/**
 * cgroup id → path → container → pod, cached. The event path only ever asks
 * `peek(id)`: a map lookup that answers what is known now; a miss queues the
 * id for one worker that walks the cgroup2 tree (at most once per interval)
 * and asks the runtime's CRI socket (each call with a deadline), so a later
 * event of that cgroup goes out named. An id nobody can name stays an id.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { DEFAULT_WALK_LIMITS, findCgroup2Mount, parseProcCgroup, walkCgroups, type WalkLimits } from './cgroupfs.js';
import { DEFAULT_CONTAINERD_NAMESPACES, parseCgroupPath, type QosClass, type Runtime } from './conventions.js';
import { CriClient, DEFAULT_CRI_SOCKETS, sandboxPid, type CriApi } from './cri.js';

/** Who a cgroup belongs to, as far as anyone could tell. */
export interface Attribution {
  readonly cgroup: number;
  /** Path under the cgroup2 mount, leading slash; empty when the id was not found. */
  readonly path: string;
  readonly runtime?: Runtime;
  /** Full container id (64 hex digits, or a `ctr` id). */
  readonly containerId?: string;
  /** The container's name in its pod, from the runtime's CRI socket. */
  readonly containerName?: string;
  /** The cgroup is the pod's sandbox (pause) container. */
  readonly sandbox?: boolean;
  readonly pod?: string;
  /** Kubernetes namespace of the pod. */
  readonly namespace?: string;
  readonly podUid?: string;
  readonly qos?: QosClass;
}

export interface ResolverOptions {
  /** cgroup2 mount; default: found in /proc/self/mountinfo. */
  readonly mount?: string;
  /**
   * The CRI: a socket path, an implementation (tests), false for none, or
   * undefined to try the usual sockets that exist.
   */
  readonly cri?: string | CriApi | false;
  /** Attributions remembered at most (least recently used go first). */
  readonly maxEntries?: number;
  /** A tree walk at most this often: misses of unknown ids wait for the next. */
  readonly walkIntervalMs?: number;
  /** A runtime that did not answer is asked again after this long. */
  readonly criRetryMs?: number;
  /** Each CRI call's deadline. */
  readonly criTimeoutMs?: number;
  /** Ids waiting for the worker at most; more are dropped and asked again on their next event. */
  readonly maxPending?: number;
  readonly walkLimits?: WalkLimits;
  readonly containerdNamespaces?: readonly string[];
  readonly now?: () => number;
  /** One line per condition worth saying once (no runtime, a partial walk). */
  readonly log?: (line: string) => void;
  /** Told each time an id's attribution is (re)made. */
  readonly onResolved?: (a: Attribution) => void;
}

interface Entry {
  readonly value: Attribution;
  used: number;
  /** A container the runtime did not name (it was down, or did not know it yet) is asked again after this time. */
  readonly retryAt?: number;
}

interface CriNames {
  readonly containerName?: string;
  readonly sandbox?: boolean;
  readonly pod?: string;
  readonly namespace?: string;
  readonly podUid?: string;
}

/** A pod found by name, for captures in its network namespace. */
export interface PodRef {
  readonly sandboxId: string;
  readonly pod: string;
  readonly namespace: string;
  /** The sandbox's first process: its /proc/PID/ns/net is the pod's network namespace. */
  readonly pid?: number;
}

export class ContainerResolver {
  readonly mount: string | undefined;
  private readonly entries = new Map<number, Entry>();
  private readonly pending = new Set<number>();
  private readonly criCache = new Map<string, CriNames>();
  private readonly max: number;
  private readonly maxPending: number;
  private readonly walkIntervalMs: number;
  private readonly criRetryMs: number;
  private readonly now: () => number;
  private readonly log: (line: string) => void;
  private index = new Map<number, string>();
  private lastWalk = -Infinity;
  private tick = 0;
  private working: Promise<void> | undefined;
  private cri: CriApi | undefined;
  private criDownUntil = -Infinity;
  private criSaid = false;
  private truncatedSaid = false;
  private closed = false;
  private retryTimer: NodeJS.Timeout | undefined;
  /** Ends the worker's wait for the next walk (close). */
  private wake: (() => void) | undefined;

  constructor(private readonly options: ResolverOptions = {}) {
    this.mount = options.mount ?? findCgroup2Mount();
    this.max = options.maxEntries ?? 4096;
    this.maxPending = options.maxPending ?? 1024;
    this.walkIntervalMs = options.walkIntervalMs ?? 2000;
    this.criRetryMs = options.criRetryMs ?? 30_000;
    this.now = options.now ?? Date.now;
    this.log = options.log ?? (() => {});
  }

  /** What is known of this id now, without waiting; a miss queues it. Id 0 (none) is never looked up. */
  peek(id: number): Attribution | undefined {
    const e = this.entries.get(id);
    if (e) {
      e.used = ++this.tick;
      // The old answer serves until the new one is in.
      if (e.retryAt !== undefined && this.now() >= e.retryAt) this.queue(id);
      return e.value;
    }
    if (id > 0) this.queue(id);
    return undefined;
  }

  /** The attribution of this id, looking it up if needed (snapshots, tests). */
  async resolve(id: number): Promise<Attribution | undefined> {
    const known = this.peek(id);
    if (known || id <= 0) return known;
    await this.drain();
    return this.entries.get(id)?.value;
  }

  /** The cgroup id of a process (its cgroup2 directory's inode), or undefined. */
  idOfPid(pid: number): number | undefined {
    if (!this.mount) return undefined;
    try {
      const path = parseProcCgroup(readFileSync(`/proc/${pid}/cgroup`, 'utf8'));
      return path === undefined ? undefined : statSync(join(this.mount, path)).ino;
    } catch {
      return undefined;
    }
  }

  /**
   * Pods by name (and namespace, when given) through the CRI, with the
   * sandbox's pid. Throws when no runtime answers.
   */
  async findPods(name: string, namespace?: string): Promise<PodRef[]> {
    const cri = this.criApi();
    if (!cri) throw new Error('no container runtime socket found');
    const pods = (await cri.listPodSandbox()).filter(
      (p) => p.metadata?.name === name && (namespace === undefined || p.metadata.namespace === namespace) && p.state === 0,
    );
    const out: PodRef[] = [];
    for (const p of pods) {
      const pid = sandboxPid(await cri.podSandboxStatus(p.id));
      out.push({ sandboxId: p.id, pod: p.metadata!.name, namespace: p.metadata!.namespace, ...(pid ? { pid } : {}) });
    }
    return out;
  }

  /** Forget what the CRI said (tests; a runtime restarted). */
  forgetNames(): void {
    this.criCache.clear();
    this.entries.clear();
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.retryTimer);
    this.wake?.();
    this.cri?.close();
    this.cri = undefined;
  }

  private queue(id: number): void {
    if (this.pending.has(id) || this.pending.size >= this.maxPending || this.closed) return;
    this.pending.add(id);
    this.kick();
  }

  /** Starts the worker unless it runs; an id queued as it was finishing starts it again. */
  private kick(): void {
    if (this.working || this.closed) return;
    this.working = this.work()
      .catch((err: unknown) => this.log(`wstrace: looking up cgroups failed: ${String(err)}`))
      .finally(() => {
        this.working = undefined;
        if (this.pending.size) this.kick();
      });
  }

  /** Waits until the worker has nothing left. */
  private async drain(): Promise<void> {
    while (this.working) await this.working;
  }

  private async work(): Promise<void> {
    // Let the batch that missed finish queueing before the walk.
    await new Promise((r) => setImmediate(r));
    while (this.pending.size && !this.closed) {
      const ids = [...this.pending];
      if (ids.some((id) => !this.index.has(id))) {
        // New cgroups need a fresh walk; at most one per interval, however many ids miss.
        const wait = this.lastWalk + this.walkIntervalMs - this.now();
        if (wait > 0) {
          await new Promise<void>((r) => {
            this.wake = r;
            this.retryTimer = setTimeout(r, wait);
          });
          this.wake = undefined;
        }
        if (this.closed) return;
        await this.walk();
      }
      for (const id of ids) {
        this.pending.delete(id);
        const path = this.index.get(id);
        // Not under the mount even now (gone, or another hierarchy): asked again on its next event.
        if (path === undefined) continue;
        const { attribution, named } = await this.attribute(id, path);
        this.store(attribution, named);
      }
    }
  }

  private async walk(): Promise<void> {
    this.lastWalk = this.now();
    if (!this.mount) return;
    const { paths, truncated } = await walkCgroups(this.mount, this.options.walkLimits ?? DEFAULT_WALK_LIMITS);
    this.index = paths;
    if (truncated && !this.truncatedSaid) {
      this.truncatedSaid = true;
      this.log(`wstrace: the cgroup tree under ${this.mount} is larger than the walk's limit: some cgroups stay unnamed`);
    }
  }

  /** What the path and the runtime say; `named` false when the runtime should have named it and did not (asked again later). */
  private async attribute(id: number, path: string): Promise<{ attribution: Attribution; named: boolean }> {
    const facts = parseCgroupPath(path, this.options.containerdNamespaces ?? DEFAULT_CONTAINERD_NAMESPACES);
    let names: CriNames | undefined;
    // docker and `ctr` containers are no CRI's (a kubelet's docker containers sit under a pod, and are asked for it).
    const ask = (facts.containerId !== undefined && facts.runtime !== 'docker' && !facts.containerdNamespace) || facts.podUid !== undefined;
    if (ask) names = await this.criNames(facts.containerId, facts.podUid);
    const podUid = facts.podUid ?? names?.podUid;
    const attribution: Attribution = {
      cgroup: id,
      path,
      ...(facts.runtime ? { runtime: facts.runtime } : {}),
      ...(facts.containerId ? { containerId: facts.containerId } : {}),
      ...(names?.containerName ? { containerName: names.containerName } : {}),
      ...(names?.sandbox ? { sandbox: true } : {}),
      ...(names?.pod ? { pod: names.pod } : {}),
      ...(names?.namespace ? { namespace: names.namespace } : {}),
      ...(podUid ? { podUid } : {}),
      ...(facts.qos ? { qos: facts.qos } : {}),
    };
    return { attribution, named: !ask || names !== undefined };
  }

  /** What the runtime calls this container (or pod sandbox, or pod by UID); undefined when it cannot say. */
  private async criNames(containerId: string | undefined, podUid: string | undefined): Promise<CriNames | undefined> {
    const key = containerId ?? `pod:${podUid}`;
    const cached = this.criCache.get(key);
    if (cached) return cached;
    const cri = this.criApi();
    if (!cri) return undefined;
    let names: CriNames | undefined;
    try {
      if (containerId) {
        const [c] = await cri.listContainers(containerId);
        if (c) {
          const [p] = await cri.listPodSandbox(c.podSandboxId);
          names = { ...(c.metadata?.name ? { containerName: c.metadata.name } : {}), ...podNames(p?.metadata) };
        } else {
          const [p] = await cri.listPodSandbox(containerId);
          if (p) names = { sandbox: true, ...podNames(p.metadata) };
        }
      } else {
        const p = (await cri.listPodSandbox()).find((s) => s.metadata?.uid === podUid);
        if (p) names = podNames(p.metadata);
      }
    } catch (err) {
      this.criDown(err);
      return undefined;
    }
    // Only answers are kept: a container the runtime does not know yet may be known on its next miss.
    if (names) {
      if (this.criCache.size >= this.max) this.criCache.delete(this.criCache.keys().next().value!);
      this.criCache.set(key, names);
    }
    return names;
  }

  private criApi(): CriApi | undefined {
    if (this.cri) return this.cri;
    const opt = this.options.cri;
    if (opt === false || this.now() < this.criDownUntil) return undefined;
    if (typeof opt === 'object') return (this.cri = opt);
    const socket = opt ?? DEFAULT_CRI_SOCKETS.find((s) => existsSync(s));
    if (!socket) {
      this.criDownUntil = this.now() + this.criRetryMs;
      return undefined;
    }
    return (this.cri = new CriClient(socket, this.options.criTimeoutMs));
  }

  private criDown(err: unknown): void {
    const socket = this.cri instanceof CriClient ? this.cri.socket : 'the CRI socket';
    if (!this.criSaid) {
      this.criSaid = true;
      const e = err as { details?: string; message?: string };
      this.log(`wstrace: no container runtime answers at ${socket} (${e.details ?? e.message ?? String(err)}): containers are shown by id, without pod names`);
    }
    // A test double stays; a real client is made again after the pause (the runtime may restart).
    if (this.cri instanceof CriClient) {
      this.cri.close();
      this.cri = undefined;
    }
    this.criDownUntil = this.now() + this.criRetryMs;
  }

  private store(a: Attribution, named: boolean): void {
    if (!this.entries.has(a.cgroup) && this.entries.size >= this.max) this.evict();
    this.entries.set(a.cgroup, { value: a, used: ++this.tick, ...(named ? {} : { retryAt: this.now() + this.criRetryMs }) });
    this.options.onResolved?.(a);
  }

  /** Drops the least recently used eighth at once, so eviction costs a sort per many inserts, not a scan per insert. */
  private evict(): void {
    const byUse = [...this.entries].sort((a, b) => a[1].used - b[1].used);
    for (const [id] of byUse.slice(0, Math.max(1, this.max >> 3))) this.entries.delete(id);
  }
}

function podNames(m: { name: string; namespace: string; uid: string } | undefined): CriNames {
  if (!m) return {};
  return { ...(m.name ? { pod: m.name } : {}), ...(m.namespace ? { namespace: m.namespace } : {}), ...(m.uid ? { podUid: m.uid } : {}) };
}
