/**
 * openTracer(): the one way into the kernel side. Loads and attaches the BPF
 * programs through the addon, decodes event batches into TraceEvents, reads
 * the exact counters, dumps sockets, and detaches on close().
 */
import { loadBinding, type Binding, type NativeTracer, type RouteState, type SocketDump } from './binding.js';
import {
  decodeBatch,
  decodeCounters,
  decodeSummaries,
  decodeTotals,
  type Counters,
  type DecodeContext,
  type EventSummary,
  type Totals,
  type TraceEvent,
} from './decode.js';
import { checkPort } from '../protocol/address.js';
import { UserError } from '../protocol/errors.js';
import { netnsReader, readCurrentNetns } from '../host/index.js';
import { NEEDS_PRIVILEGE } from './errors.js';
import { MAX_CGROUPS, MAX_PORTS } from './layout.js';
import { resolveCgroup, type CgroupRef } from './cgroup.js';
import type { HookStatus } from '../signals/hooks.js';
import type { Signal } from '../signals/kinds.js';
import { ReasonNames } from './names.js';
import { RawBatch } from './raw.js';
import { ephemeralPortRange, resolveNetns, type NetnsRef } from './netns.js';
import { SocketOwners } from './owners.js';

export interface TracerOptions {
  /** Keep only events where either port is one of these (tcpdump's `port`). */
  readonly ports?: readonly number[];
  /** Keep only one network namespace: a name from `ip netns` or an nsfs path. */
  readonly netns?: string;
  /**
   * Keep only events of sockets in these cgroups or below them (paths of the
   * cgroup2 hierarchy, resolved by resolveCgroup); events whose socket's
   * cgroup is unknown (timewait sockets, packets no socket took) are left out.
   */
  readonly cgroups?: readonly string[];
  /** Ring-buffer size in bytes: a power of two, at least one page. */
  readonly ringBytes?: number;
  /** At most one accept_queue_full event per listener per this many ms. */
  readonly fullEventIntervalMs?: number;
  /** Look up pid/comm of listener sockets (an /proc walk on a miss). */
  readonly resolveOwners?: boolean;
  /** The addon and its checks; tests pass a fake that implements the same interface. */
  readonly binding?: Binding;
  /** Per signal, force one hook variant ("none" for none); for the kernel matrix. */
  readonly variants?: Readonly<Record<string, string>>;
  /** Count every run of every program in Counters.hits; for the kernel matrix. */
  readonly countHits?: boolean;
  /**
   * Events per second sent in full, for the whole host (default
   * DEFAULT_EVENT_BUDGET; 0: every event, for forensics). Enforced in the
   * kernel before a ring slot is taken, up to a second's worth at once;
   * events beyond it are counted in summary rows (drainSummaries()) and in
   * Totals.summarised. Counters stay exact either way.
   */
  readonly eventBudget?: number;
}

export type { HookStatus } from '../signals/hooks.js';
export type { Signal } from '../signals/kinds.js';
export { blindNotes } from '../signals/hooks.js';

export const DEFAULT_RING_BYTES = 4 << 20;

/** Full event detail for up to this many events a second on the host; beyond it, summary rows. */
export const DEFAULT_EVENT_BUDGET = 10_000;
const MAX_EVENT_BUDGET = 1e9;

export type BatchListener = (events: TraceEvent[]) => void;
/** Gets each batch undecoded; the batch is valid only during the call. */
export type RawBatchListener = (batch: RawBatch) => void;

export class Tracer {
  private readonly listeners = new Set<BatchListener>();
  private readonly rawListeners = new Set<RawBatchListener>();
  private readonly decodeContext: DecodeContext;
  private readonly owners: SocketOwners | undefined;
  private native: NativeTracer | undefined;
  private draining: Promise<unknown> = Promise.resolve();
  readonly hooks: readonly HookStatus[];
  /** Events per second sent in full (0: no budget, every event is sent). */
  readonly eventBudget: number;

  /** Use openTracer(). */
  constructor(
    private readonly binding: Binding,
    readonly netns: NetnsRef | undefined,
    options: TracerOptions,
    /** The traced namespace's ip_local_port_range when opened: resets on these ports without a listener fold into port 0. */
    readonly ephemeralPorts: [number, number] | undefined,
    /** The cgroups the kernel side keeps (with their descendants); empty: all. */
    readonly cgroups: readonly CgroupRef[] = [],
  ) {
    const reasons = new ReasonNames((name) => binding.enumNames(name));
    this.decodeContext = { clockOffsetMs: Number(binding.clockOffsetNs()) / 1e6, reasons };
    this.owners = options.resolveOwners === false ? undefined : new SocketOwners();
    this.eventBudget = options.eventBudget ?? DEFAULT_EVENT_BUDGET;
    try {
      this.native = binding.open({
        ports: [...(options.ports ?? [])],
        netns: netns?.inode ?? 0,
        ringBytes: options.ringBytes ?? DEFAULT_RING_BYTES,
        fullEventIntervalNs: Math.round((options.fullEventIntervalMs ?? 100) * 1e6),
        onBatch: (batch) => this.onBatch(batch),
        ...(options.variants ? { variants: options.variants } : {}),
        ...(options.countHits ? { countHits: true } : {}),
        ...(ephemeralPorts ? { ephemeralPorts } : {}),
        eventBudget: this.eventBudget,
        ...(cgroups.length ? { cgroups: cgroups.map((c) => ({ id: c.id, level: c.level })) } : {}),
      });
    } catch (err) {
      const code = (err as { errno?: number }).errno;
      if (code === 1 || code === 13) throw new UserError(NEEDS_PRIVILEGE);
      throw err;
    }
    this.hooks = this.native.hooks().map((h) => ({
      hook: h.name,
      signal: h.signal as Signal,
      variant: h.variant,
      attached: h.attached,
      ...(h.attached ? {} : { error: h.error }),
      ...(h.standsDown ? { standsDown: h.standsDown } : {}),
    }));
  }

  /** Receives every decoded batch; returns the unsubscribe function. */
  subscribe(listener: BatchListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Receives every batch as it lies in the addon's buffer, read through
   * accessors: no object per event. Nothing of it may be kept past the call
   * (the addon reuses the memory). Returns the unsubscribe function.
   */
  subscribeRaw(listener: RawBatchListener): () => void {
    this.rawListeners.add(listener);
    return () => this.rawListeners.delete(listener);
  }

  /** Hands subscribers every event already in the kernel ring, now. */
  flush(): void {
    this.native?.flush();
  }

  /** Exact counts from the kernel maps. */
  counters(): Counters {
    return decodeCounters(this.open().counters(), this.decodeContext.reasons);
  }

  /** The totals alone: cheap, as no keyed map is dumped. */
  totals(): Totals {
    return decodeTotals(this.open().counters(true).totals);
  }

  /**
   * Every summary row made since the last call: the events beyond the budget,
   * each counted once. Each drain swaps the kernel's summary map for an empty
   * one and waits until no program can still add to the old one, a few
   * milliseconds, off the JS thread. Calls run one after another.
   */
  drainSummaries(): Promise<EventSummary[]> {
    const native = this.open();
    const rows = this.draining.then(() => native.drainSummaries()).then((raw) => decodeSummaries(raw, this.decodeContext));
    this.draining = rows.catch(() => undefined);
    return rows;
  }

  /** Events the kernel ring buffer had no room for. */
  lost(): number {
    return this.totals().ringDrops;
  }

  /**
   * Program runs the kernel skipped because they would have nested in a run
   * of the same program on the same CPU (an event in a softirq while one from
   * process context is being handled): events that are in no count, the
   * totals included. Rare, and never silent: show it next to the totals.
   */
  skippedRuns(): number {
    return this.open().skippedRuns();
  }

  /** syn_drop's tracepoint route, for diagnosis (RouteState); with a namespace's inode, the counts its ends took. */
  routeState(netns?: number): RouteState {
    return this.open().routeState(netns);
  }

  programIds(): number[] {
    return this.native ? this.native.programIds() : [];
  }

  /** Listeners and TIME_WAIT groups of the traced namespace (or this one). */
  dumpSockets(): Promise<SocketDump> {
    return this.binding.dumpSockets(this.netns ? { netns: this.netns.path } : {});
  }

  /**
   * Listening ports keep their own reset rows inside the ephemeral range: the
   * ones open now are told here; the kernel side adds each listener that
   * queues a child from then on.
   */
  async keepListeners(): Promise<void> {
    if (!this.ephemeralPorts) return;
    const dump = await this.dumpSockets();
    this.native?.keepPorts(dump.listeners.map((l) => l.port));
  }

  get closed(): boolean {
    return this.native === undefined;
  }

  /** Detaches every program and frees the maps. Safe to call twice. */
  close(): void {
    const n = this.native;
    this.native = undefined;
    this.listeners.clear();
    this.rawListeners.clear();
    n?.close();
  }

  private open(): NativeTracer {
    if (!this.native) throw new Error('the tracer is closed');
    return this.native;
  }

  /** `batch` is only valid during this call (the addon reuses its memory). */
  private onBatch(batch: Uint8Array): void {
    if (this.rawListeners.size) {
      const raw = new RawBatch(batch, this.decodeContext, this.owners);
      for (const l of this.rawListeners) l(raw);
    }
    // Decoded into objects only when someone asked for them (capture rules, tests, tools).
    if (this.listeners.size === 0) return;
    const events = decodeBatch(batch, this.decodeContext, this.owners);
    for (const l of this.listeners) l(events);
  }
}

function checkBudget(budget: number | undefined): void {
  if (budget === undefined) return;
  if (!Number.isInteger(budget) || budget < 0 || budget > MAX_EVENT_BUDGET) {
    throw new UserError(`the event budget must be a whole number of events per second from 0 (no budget) to ${MAX_EVENT_BUDGET}.`);
  }
}

/** The --cgroup paths, resolved (each refused in one sentence), at most MAX_CGROUPS of them. */
export function resolveCgroups(specs: readonly string[] | undefined): CgroupRef[] {
  if (!specs?.length) return [];
  if (specs.length > MAX_CGROUPS) throw new UserError(`at most ${MAX_CGROUPS} cgroups can be watched at once.`);
  return specs.map((spec) => resolveCgroup(spec));
}

function checkPorts(ports: readonly number[] | undefined): void {
  if (!ports) return;
  if (ports.length > MAX_PORTS) throw new UserError(`at most ${MAX_PORTS} ports can be watched at once.`);
  for (const p of ports) checkPort(p);
}

/**
 * Checks, opens and attaches. Async because the traced namespace's
 * ip_local_port_range is read (through the addon's namespace thread) before
 * load: folding fixes it into the BPF programs.
 */
export async function openTracer(options: TracerOptions = {}): Promise<Tracer> {
  checkPorts(options.ports);
  checkBudget(options.eventBudget);
  const netns = options.netns === undefined ? undefined : resolveNetns(options.netns);
  const cgroups = resolveCgroups(options.cgroups);
  const binding = options.binding ?? loadBinding();
  const blocker = binding.loadBlocker();
  if (blocker) throw new UserError(blocker);
  const ephemeral = await ephemeralPortRange(netns ? netnsReader(binding, netns.path) : readCurrentNetns);
  const tracer = new Tracer(binding, netns, options, ephemeral, cgroups);
  // Without this a listener older than the tracer has its resets folded away until it
  // queues a child; a failed dump costs only that, so the tracer is still usable.
  await tracer.keepListeners().catch(() => undefined);
  return tracer;
}
