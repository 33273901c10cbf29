/**
 * From trials to the numbers the report prints: exactness against the
 * kernel's own counters, delivery, overhead (medians of alternated arms) and
 * footprint, per step; then the goals, met or not.
 */
import { accountedTotal, emittedTotal } from './agent.js';
import { mibDelta, type KernelCounts } from './netns.js';
import type { CeilingResult, LossResult } from './pipeline.js';
import { AGENT_ARMS, ARMS, type Arm, type Step } from './plan.js';
import { accounted, DEFAULT_SUBSCRIBER_QUEUE, FLAT_BYTES, STALLED_RSS_BUDGET_BYTES, type StalledResult } from './stalled.js';
import type { Trial } from './trial.js';

export interface ExactRow {
  readonly counter: string;
  /** How the referee is computed, in words. */
  readonly referee: string;
  /** Worst trial: furthest from 1. */
  readonly wstrace: number;
  readonly kernel: number;
  /** wstrace ÷ kernel, or null when no honest ratio exists (blind hook). */
  readonly ratio: number | null;
  /** Trials where wstrace == kernel, of those checked. */
  readonly exactTrials: number;
  readonly trials: number;
  readonly note?: string;
}

export interface ArmStats {
  readonly rates: number[];
  readonly median: number;
  /** Generator CPU (user + sys) per op, microseconds, median: the kernel-side cost of each op. */
  readonly cpuUsPerOp: number;
  /** Every trial reached ≥ 99% of the target rate (paced steps). */
  readonly targetReached: boolean;
  /**
   * Busy fraction of all CPUs during the load, median (the load, the arm, and
   * anything else running). Tick-sampled (/proc/stat): a paced load that
   * sleeps on 1 ms boundaries can alias with the tick, so JSON only.
   */
  readonly hostBusy: number;
  /** In-kernel time of the arm's BPF programs per op and per program run, ns, medians (kernel.bpf_stats_enabled). */
  readonly bpfNsPerOp?: number;
  readonly bpfNsPerRun?: number;
  /**
   * Where the CPU went during the load, µs per op, medians: every CPU's busy time (tick-sampled), the
   * load generator's, the arm's own process (agent or bpftrace) and the bench process's (the gRPC
   * subscriber). The BPF programs run inside whichever of these a packet's path was on.
   */
  readonly usPerOp: { readonly machine: number; readonly arm?: number; readonly subscriber: number };
}

export interface StepSummary {
  readonly scenario: Step['scenario'];
  readonly step: string;
  readonly unit: string;
  readonly target: number;
  /** Events the kernel side emitted per second of load, median over wstrace trials. */
  readonly eventsPerSecond: number;
  readonly exact: ExactRow[];
  /** Of the wstrace arm (default budget). */
  readonly delivery: Delivery;
  readonly arms: Partial<Record<Arm, ArmStats>>;
  readonly overhead: {
    readonly wstrace?: number;
    readonly bpftrace?: number;
    readonly wstraceVsBpftrace?: number;
    /** The wstrace-all arm (no budget: every event delivered) ÷ untraced. */
    readonly everyEvent?: number;
  };
  /** Of the wstrace arm. */
  readonly footprint: Footprint;
  /** The wstrace-all arm's delivery and footprint, on the steps it ran (unpaced ones). */
  readonly everyEvent?: { readonly delivery: Delivery; readonly footprint: Footprint };
}

/** Emitted: every event the kernel side counted (ring, ring drops, summarised beyond the budget, summary table full). */
export interface Delivery {
  readonly emitted: number;
  readonly delivered: number;
  /** Events the subscriber got in summary rows (none with no budget). */
  readonly summarised: number;
  readonly lostKernelRing: number;
  readonly lostSlow: number;
  /** Worst trial: (delivered + summarised) ÷ emitted, and (delivered + summarised + reported lost) ÷ emitted. */
  readonly deliveredRatio: number;
  readonly accountedRatio: number;
}

export interface Footprint {
  readonly cpuSecondsPer100k: number;
  readonly peakRssBytes: number;
  readonly agentCpuSeconds: number;
}

export function median(xs: readonly number[]): number {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

const d = (t: Trial, key: string) => mibDelta(t.before, t.after, key);

/**
 * Resets received, from the kernel's accounting of how connections ended.
 * There is no "RSTs received" MIB: TcpEstabResets counts every
 * ESTABLISHED/CLOSE_WAIT → CLOSE, including the aborting side of a linger-0
 * or unread-data close (which receives nothing), and misses refused
 * connects (SYN_SENT, counted in TcpAttemptFails). So: SYN_SENT/SYN_RECV
 * failures, minus RSTs that hit a request socket (no full socket, no
 * tcp_receive_reset), plus established resets, minus local aborts.
 */
export const RECEIVED_REFEREE =
  'TcpAttemptFails − EmbryonicRsts + TcpEstabResets − TCPAbortOn{Data,Close,Memory,Timeout,Linger}';

/** Steps whose closes the derivation cannot follow (plan.ts traceResetPorts). */
export const TRACED_RECEIVED_REFEREE = 'tcp_receive_reset trace events not answered by their own socket';

export function resetsReceivedReferee(t: Trial): number {
  return (
    d(t, 'TcpAttemptFails') -
    d(t, 'TcpExtEmbryonicRsts') +
    d(t, 'TcpEstabResets') -
    d(t, 'TcpExtTCPAbortOnData') -
    d(t, 'TcpExtTCPAbortOnClose') -
    d(t, 'TcpExtTCPAbortOnMemory') -
    d(t, 'TcpExtTCPAbortOnTimeout') -
    d(t, 'TcpExtTCPAbortOnLinger')
  );
}

function tw(c: KernelCounts): number {
  return c.sockstat.tw ?? 0;
}

interface Check {
  readonly counter: string;
  readonly referee: string;
  readonly wstrace: number;
  readonly kernel: number;
  /** null: no honest ratio (blind). */
  readonly comparable: boolean;
  readonly note?: string;
}

function checks(t: Trial, step: Step): Check[] {
  const w = t.wstrace!;
  const c = w.counts;
  const out: Check[] = [
    { counter: 'resets sent', referee: 'TcpOutRsts', wstrace: c.resetsSent, kernel: d(t, 'TcpOutRsts'), comparable: true },
    t.tracedResets
      ? {
          counter: 'resets received',
          referee: TRACED_RECEIVED_REFEREE,
          wstrace: c.resetsReceived,
          kernel: t.tracedResets.received,
          // A trace that lost events is no referee.
          comparable: t.tracedResets.overruns === 0,
          note:
            `${t.tracedResets.abortsOnData} tcp_reset() on data left out` +
            (t.tracedResets.overruns ? `; the trace lost ${t.tracedResets.overruns} events` : '') +
            `; the MIB derivation says ${resetsReceivedReferee(t)} (it misses resets that reach closing sockets)`,
        }
      : {
          counter: 'resets received',
          referee: RECEIVED_REFEREE,
          wstrace: c.resetsReceived,
          kernel: resetsReceivedReferee(t),
          comparable: true,
        },
  ];
  const twOverflow = d(t, 'TcpExtTCPTimeWaitOverflow');
  // Both count a timewait socket as its timer is armed: TWKilled for timers of 4 s or less (short FIN_WAIT2 ones).
  const twMade = d(t, 'TcpExtTW') + d(t, 'TcpExtTWKilled');
  const twNow = tw(t.after) - tw(t.before);
  const twNotes = [
    twOverflow ? `TCPTimeWaitOverflow ${twOverflow}: the kernel closed sockets it had no timewait bucket for` : '',
    twNow !== twMade ? `sockstat tw rose by ${twNow}: ${twMade - twNow} left early (a new SYN on the same 4-tuple ends a TIME_WAIT)` : '',
  ].filter(Boolean);
  out.push({
    counter: 'TIME_WAIT made',
    referee: 'TcpExtTW + TWKilled',
    wstrace: c.timewait,
    kernel: twMade,
    comparable: true,
    ...(twNotes.length ? { note: twNotes.join('; ') } : {}),
  });
  out.push({
    counter: 'children queued',
    referee: 'TcpPassiveOpens',
    wstrace: c.acceptEnqueued,
    kernel: d(t, 'TcpPassiveOpens'),
    comparable: true,
  });
  const overflows = d(t, 'TcpExtListenOverflows');
  if (w.synHookLive) {
    out.push({
      counter: 'listen overflows',
      referee: 'TcpExtListenOverflows',
      wstrace: c.listenOverflows + c.synDrops,
      kernel: overflows,
      comparable: true,
      note: 'ACK-stage + SYN-stage hooks',
    });
  } else if (step.ackOnly && overflows === t.load.ops) {
    out.push({
      counter: 'listen overflows',
      referee: 'TcpExtListenOverflows',
      wstrace: c.listenOverflows,
      kernel: overflows,
      comparable: true,
      note: 'all ACK-stage: ListenOverflows equals the drops the load built, so no SYN-stage drop happened',
    });
  } else if (overflows || c.listenOverflows) {
    out.push({
      counter: 'listen overflows',
      referee: 'TcpExtListenOverflows',
      wstrace: c.listenOverflows,
      kernel: overflows,
      comparable: false,
      note: `SYN-stage blind on this kernel (no tcp_conn_request hook): wstrace sees the ${c.listenOverflows} ACK-stage drops; the other ${overflows - c.listenOverflows} are SYN-stage drops only the kernel counts`,
    });
  }
  // A count short of the kernel's by no more than the runs the kernel skipped is said to be explained by them.
  const skipped = c.skippedRuns ?? 0;
  return out
    .filter((x) => x.kernel !== 0 || x.wstrace !== 0)
    .map((x) => {
      if (!x.comparable || x.wstrace >= x.kernel) return x;
      const gap = x.kernel - x.wstrace;
      const why = skipped
        ? `${gap} short; the kernel skipped ${skipped} runs of wstrace's programs as nested (recursion_misses, all namespaces)${gap <= skipped ? '' : `: ${gap - skipped} not explained by them`}`
        : `${gap} short; the kernel reports no skipped run (recursion_misses 0)`;
      // tcp_send_active_reset() counts TcpOutRsts before it allocates the reset: one it cannot allocate counts TCPAbortFailed and never reaches tcp_send_reset.
      const abortFailed = d(t, 'TcpExtTCPAbortFailed');
      const unsent =
        x.counter !== 'resets sent'
          ? ''
          : abortFailed
            ? `; TcpExtTCPAbortFailed rose by ${abortFailed} (an active reset the kernel counted in TcpOutRsts but could not allocate is never sent, so no tcp_send_reset fires for it)`
            : '; TcpExtTCPAbortFailed did not rise (no active reset failed to allocate)';
      return { ...x, note: `${x.note ? `${x.note}; ` : ''}${why}${unsent}` };
    });
}

function distance(w: number, k: number): number {
  return k === 0 ? (w === 0 ? 0 : Infinity) : Math.abs(w / k - 1);
}

function exactRows(trials: Trial[], step: Step): ExactRow[] {
  const byCounter = new Map<string, Check[]>();
  for (const t of trials) for (const c of checks(t, step)) byCounter.set(c.counter, [...(byCounter.get(c.counter) ?? []), c]);
  return [...byCounter.values()].map((cs) => {
    const worst = cs.reduce((a, b) => (distance(b.wstrace, b.kernel) > distance(a.wstrace, a.kernel) ? b : a));
    const blind = cs.find((c) => !c.comparable);
    const shown = blind ?? worst;
    return {
      counter: shown.counter,
      referee: shown.referee,
      wstrace: shown.wstrace,
      kernel: shown.kernel,
      ratio: blind ? null : worst.kernel === 0 ? (worst.wstrace === 0 ? 1 : Infinity) : worst.wstrace / worst.kernel,
      exactTrials: cs.filter((c) => c.comparable && c.wstrace === c.kernel).length,
      trials: cs.length,
      ...(shown.note ? { note: shown.note } : {}),
    };
  });
}

const perOpUs = (t: Trial, seconds: number) => (seconds / Math.max(1, t.load.ops)) * 1e6;

export function summarizeStep(step: Step, trials: Trial[]): StepSummary {
  const mine = trials.filter((t) => t.scenario === step.scenario && t.step === step.label);
  // Exactness holds for every agent, whatever its budget: both agent arms' trials are checked.
  const agents = mine.filter((t) => t.wstrace && AGENT_ARMS.includes(t.arm));
  const ws = agents.filter((t) => t.arm === 'wstrace');
  const all = agents.filter((t) => t.arm === 'wstrace-all');
  const arms: Partial<Record<Arm, ArmStats>> = {};
  for (const arm of ARMS) {
    const ts = mine.filter((t) => t.arm === arm);
    if (!ts.length) continue;
    const rates = ts.map((t) => t.load.rate);
    arms[arm] = {
      rates,
      median: median(rates),
      cpuUsPerOp: median(ts.map((t) => (t.load.cpuSeconds / Math.max(1, t.load.ops)) * 1e6)),
      targetReached: step.load.rate > 0 && ts.every((t) => t.load.rate >= 0.99 * step.load.rate),
      hostBusy: median(ts.map((t) => t.hostBusy)),
      usPerOp: {
        machine: median(ts.map((t) => perOpUs(t, t.cpu.machine))),
        ...(ts.every((t) => t.cpu.arm !== undefined) ? { arm: median(ts.map((t) => perOpUs(t, t.cpu.arm!))) } : {}),
        subscriber: median(ts.map((t) => perOpUs(t, t.cpu.subscriber))),
      },
      ...(ts.every((t) => t.bpf && t.bpf.runs > 0)
        ? {
            bpfNsPerOp: median(ts.map((t) => t.bpf!.ns / Math.max(1, t.load.ops))),
            bpfNsPerRun: median(ts.map((t) => t.bpf!.ns / t.bpf!.runs)),
          }
        : {}),
    };
  }
  const u = arms.untraced?.median;
  const w = arms.wstrace?.median;
  const b = arms.bpftrace?.median;
  const a = arms['wstrace-all']?.median;
  return {
    scenario: step.scenario,
    step: step.label,
    unit: step.unit,
    target: step.load.rate,
    eventsPerSecond: median((ws.length ? ws : agents).map((t) => emittedTotal(t.wstrace!.emitted) / t.load.seconds)),
    exact: agents.length ? exactRows(agents, step) : [],
    delivery: deliveryOf(ws),
    arms,
    overhead: {
      ...(u && w ? { wstrace: w / u } : {}),
      ...(u && b ? { bpftrace: b / u } : {}),
      ...(w && b ? { wstraceVsBpftrace: w / b } : {}),
      ...(u && a ? { everyEvent: a / u } : {}),
    },
    footprint: footprintOf(ws),
    ...(all.length ? { everyEvent: { delivery: deliveryOf(all), footprint: footprintOf(all) } } : {}),
  };
}

/** Delivery of one agent arm's trials: summed, with the worst trial's ratios. */
function deliveryOf(ws: Trial[]): Delivery {
  let emitted = 0;
  let delivered = 0;
  let summarised = 0;
  let lostKernelRing = 0;
  let lostSlow = 0;
  let deliveredRatio = 1;
  let accountedRatio = 1;
  for (const t of ws) {
    const e = emittedTotal(t.wstrace!.emitted);
    const r = t.wstrace!.received;
    emitted += e;
    delivered += r.delivered;
    summarised += r.summarised;
    lostKernelRing += r.lostKernelRing;
    lostSlow += r.lostSlow;
    const dr = e ? (r.delivered + r.summarised) / e : 1;
    const ar = e ? accountedTotal(r) / e : 1;
    if (Math.abs(dr - 1) > Math.abs(deliveredRatio - 1)) deliveredRatio = dr;
    if (Math.abs(ar - 1) > Math.abs(accountedRatio - 1)) accountedRatio = ar;
  }
  return { emitted, delivered, summarised, lostKernelRing, lostSlow, deliveredRatio, accountedRatio };
}

function footprintOf(ws: Trial[]): Footprint {
  const cpuPer100k = ws.map((t) => {
    const e = emittedTotal(t.wstrace!.emitted);
    return e ? (t.wstrace!.agentCpuSeconds / e) * 1e5 : NaN;
  });
  return {
    cpuSecondsPer100k: median(cpuPer100k.filter((x) => !Number.isNaN(x))),
    peakRssBytes: Math.max(0, ...ws.map((t) => t.wstrace!.agentPeakRssBytes)),
    agentCpuSeconds: median(ws.map((t) => t.wstrace!.agentCpuSeconds)),
  };
}

export interface Goal {
  readonly goal: string;
  readonly measured: string;
  readonly met: boolean | null;
}

/** Issue 14's goals: wstrace ÷ bpftrace ≥ 1.00 (no allowance for noise; the table shows it), ÷ untraced ≥ 0.95. */
export const BPFTRACE_TOLERANCE = 0;
export const UNTRACED_GOAL = 0.95;
/** The same agent with no rate budget (every event through ring, agent and gRPC) ÷ untraced, at every machine-limited step. */
export const EVERY_EVENT_GOAL = 0.9;
/** BPF ns per program run at most this many times bpftrace's, on every step. */
export const BPF_NS_RATIO_GOAL = 1.5;
export const GRPC_PIPELINE_GOAL = 1_000_000;
export const ADDON_PIPELINE_GOAL = 500_000;
/** Agent CPU seconds per 100k events at saturation (machine-limited steps). */
export const AGENT_CPU_GOAL = 0.05;
export const AGENT_RSS_GOAL = 80e6;
export const EXACT_UP_TO_EVENTS = Infinity;

/** Whether a step's rate is set by the machine (unpaced, or paced but not reached), so overhead shows there. */
export function loadLimited(s: StepSummary): boolean {
  return s.target === 0 || !(s.arms.untraced?.targetReached ?? true);
}

export function goals(steps: StepSummary[], ceilings: CeilingResult[], losses: LossResult[] = [], stalled: StalledResult[] = []): Goal[] {
  const out: Goal[] = [];
  const fmt = (x: number) => x.toFixed(3);
  const withExact = steps.filter((s) => s.exact.length);
  const low = withExact.filter((s) => s.eventsPerSecond <= EXACT_UP_TO_EVENTS * 1.05);
  const rows = low.flatMap((s) => s.exact.filter((r) => r.ratio !== null).map((r) => ({ s, r })));
  const off = rows.filter(({ r }) => r.exactTrials !== r.trials);
  const highOff = withExact
    .filter((s) => !low.includes(s))
    .flatMap((s) => s.exact.filter((r) => r.ratio !== null && r.exactTrials !== r.trials).map((r) => `${s.scenario} ${s.step} ${r.counter}`));
  out.push({
    goal: 'exactness 1.000 against the kernel counters in every step',
    measured: rows.length
      ? off.length
        ? `off in ${off.map(({ s, r }) => `${s.scenario} ${s.step} ${r.counter} (${r.ratio === null ? 'blind' : r.ratio.toFixed(4)})`).join('; ')}`
        : `${rows.length} counter checks in ${low.length} steps all exactly 1.000` + (highOff.length ? `; off in ${highOff.join(', ')}` : '')
      : 'no wstrace trial ran',
    met: rows.length ? off.length === 0 : null,
  });
  // Both agent arms: with no budget nothing may be summarised, so there delivered + reported lost = emitted.
  const del = steps.flatMap((s) => [s.delivery, ...(s.everyEvent ? [s.everyEvent.delivery] : [])]).filter((x) => x.emitted > 0);
  const worstDelivered = Math.min(...del.map((x) => x.deliveredRatio));
  const worstAccounted = del.reduce((a, x) => (Math.abs(x.accountedRatio - 1) > Math.abs(a - 1) ? x.accountedRatio : a), 1);
  const allDel = steps.flatMap((s) => (s.everyEvent && s.everyEvent.delivery.emitted > 0 ? [s.everyEvent.delivery] : []));
  const allSummarised = allDel.reduce((n, x) => n + x.summarised, 0);
  const allText = allDel.length
    ? `; every event (no budget): ${allSummarised ? `**${allSummarised} summarised**` : 'none summarised'}, (delivered + reported lost) ÷ emitted = ${fmt(
        allDel.reduce((a, x) => (Math.abs(x.accountedRatio - 1) > Math.abs(a - 1) ? x.accountedRatio : a), 1),
      )} in the worst trial`
    : '';
  const lossText = losses.length
    ? `; kernel ring overflowing (agent held, ${losses[0]!.ringBytes / 1024} KiB ring): ${losses.map((l) => `${l.ringDrops} of ${l.emitted} dropped, (delivered + reported) ÷ emitted = ${fmt(l.accounted)}`).join('; ')}`
    : '';
  const lossOk = losses.every((l) => l.accounted === 1);
  out.push({
    goal: 'delivery 1.000, or every loss reported',
    measured: del.length || losses.length
      ? `${del.length ? `(delivered + summarised) ÷ emitted ≥ ${fmt(worstDelivered)}; (delivered + summarised + reported lost) ÷ emitted = ${fmt(worstAccounted)} in the worst trial` : 'no scenario trial'}${allText}${lossText}`
      : 'no wstrace trial ran',
    met: del.length || losses.length ? worstAccounted === 1 && lossOk && allSummarised === 0 : null,
  });
  const limited = steps.filter((s) => loadLimited(s) && s.overhead.wstrace !== undefined);
  const worstW = limited.reduce<StepSummary | undefined>((a, s) => (!a || s.overhead.wstrace! < a.overhead.wstrace! ? s : a), undefined);
  out.push({
    goal: `overhead: ≥ ${UNTRACED_GOAL} of untraced (default settings, one gRPC subscriber)`,
    measured: worstW ? `worst ${fmt(worstW.overhead.wstrace!)} (${worstW.scenario} ${worstW.step}); machine-limited steps only` : 'no machine-limited step ran with both arms',
    met: worstW ? worstW.overhead.wstrace! >= UNTRACED_GOAL : null,
  });
  // The every-event arm runs on unpaced steps only, so every step it has a ratio for is machine-limited.
  const every = steps.filter((s) => loadLimited(s) && s.overhead.everyEvent !== undefined);
  const worstA = every.reduce<StepSummary | undefined>((a, s) => (!a || s.overhead.everyEvent! < a.overhead.everyEvent! ? s : a), undefined);
  out.push({
    goal: `with the budget set to unlimited (every event delivered): ÷ untraced ≥ ${EVERY_EVENT_GOAL.toFixed(2)} at every machine-limited step`,
    measured: worstA
      ? `worst ${fmt(worstA.overhead.everyEvent!)} (${worstA.scenario} ${worstA.step}; --event-budget 0, one gRPC subscriber), of ${every.length} unpaced steps (where it runs)`
      : 'no machine-limited step ran with both arms',
    met: worstA ? worstA.overhead.everyEvent! >= EVERY_EVENT_GOAL : null,
  });
  const vsB = limited.filter((s) => s.overhead.wstraceVsBpftrace !== undefined);
  const worstB = vsB.reduce<StepSummary | undefined>((a, s) => (!a || s.overhead.wstraceVsBpftrace! < a.overhead.wstraceVsBpftrace! ? s : a), undefined);
  out.push({
    goal: `overhead: not worse than bpftrace (wstrace ÷ bpftrace ≥ ${(1 - BPFTRACE_TOLERANCE).toFixed(2)})`,
    measured: worstB ? `worst ${fmt(worstB.overhead.wstraceVsBpftrace!)} (${worstB.scenario} ${worstB.step})` : 'no bpftrace arm ran',
    met: worstB ? worstB.overhead.wstraceVsBpftrace! >= 1 - BPFTRACE_TOLERANCE : null,
  });
  const withBpf = steps.filter((s) => s.arms.wstrace?.bpfNsPerRun !== undefined && s.arms.bpftrace?.bpfNsPerRun);
  const nsRatio = (s: StepSummary) => s.arms.wstrace!.bpfNsPerRun! / s.arms.bpftrace!.bpfNsPerRun!;
  const worstNs = withBpf.reduce<StepSummary | undefined>((a, s) => (!a || nsRatio(s) > nsRatio(a) ? s : a), undefined);
  out.push({
    goal: `BPF ns per program run ≤ ${BPF_NS_RATIO_GOAL} × bpftrace's on every step`,
    measured: worstNs
      ? `worst ${nsRatio(worstNs).toFixed(2)} × (${worstNs.scenario} ${worstNs.step}: ${worstNs.arms.wstrace!.bpfNsPerRun!.toFixed(0)} vs ${worstNs.arms.bpftrace!.bpfNsPerRun!.toFixed(0)} ns)`
      : 'no step with both arms measured',
    met: worstNs ? nsRatio(worstNs) <= BPF_NS_RATIO_GOAL : null,
  });
  for (const path of ['addon', 'grpc'] as const) {
    const cs = ceilings.filter((c) => c.path === path);
    const m = median(cs.map((c) => c.eventsPerSecond));
    const want = path === 'addon' ? ADDON_PIPELINE_GOAL : GRPC_PIPELINE_GOAL;
    out.push({
      goal: `pipeline ≥ ${want >= 1e6 ? `${want / 1e6}M` : `${want / 1000}k`} events/s (${path === 'addon' ? 'ring → addon → JS' : 'ring → agent → gRPC → one subscriber'})`,
      measured: cs.length ? `${Math.round(m / 1000)}k events/s (median of ${cs.length})` : 'not run',
      met: cs.length ? m >= want : null,
    });
  }
  // Saturation: the agent draining the gRPC ceiling's backlog as fast as it can (every event, no budget).
  const cpus = ceilings.filter((c) => c.path === 'grpc' && c.agentCpuPer100k !== undefined && Number.isFinite(c.agentCpuPer100k)).map((c) => c.agentCpuPer100k!);
  const cpu = median(cpus);
  out.push({
    goal: `agent CPU ≤ ${AGENT_CPU_GOAL} s per 100k events at saturation`,
    measured: cpus.length ? `${cpu.toFixed(3)} s (median of ${cpus.length}; the agent draining the gRPC ceiling's backlog, every event sent)` : 'not run (pipeline scenario)',
    met: cpus.length ? cpu <= AGENT_CPU_GOAL : null,
  });
  const rss = Math.max(0, ...steps.map((s) => Math.max(s.footprint.peakRssBytes, s.everyEvent?.footprint.peakRssBytes ?? 0)));
  out.push({
    goal: `agent peak RSS ≤ ${AGENT_RSS_GOAL / 1e6} MB in every trial`,
    measured: rss ? `${(rss / 1e6).toFixed(1)} MB (largest VmHWM of any trial's agent)` : 'no wstrace trial ran',
    met: rss ? rss <= AGENT_RSS_GOAL : null,
  });
  out.push(...stalledGoals(stalled));
  return out;
}

const mbText = (bytes: number) => `${(bytes / 1e6).toFixed(0)} MB`;
const grew = (s: StalledResult) => s.rss.peak - s.rss.start;

/** Issue 13, item 1: a client that never reads must not make the agent grow with the storm. */
function stalledGoals(runs: StalledResult[]): Goal[] {
  // Judged at the agent's default queue; other queue sizes show what the limit buys.
  const withClient = runs.filter((s) => s.stalledClient && s.subscriberQueue === DEFAULT_SUBSCRIBER_QUEUE).sort((a, b) => a.stormEvents - b.stormEvents);
  const controls = runs.filter((s) => !s.stalledClient);
  const all = runs.filter((s) => s.stalledClient);
  const small = withClient[0];
  const large = withClient.at(-1);
  const sizes = (s: StalledResult) => `${(s.emitted / 1e6).toFixed(1)}M events`;
  const flat = small && large && large !== small ? grew(large) - grew(small) : undefined;
  const worst = withClient.reduce<StalledResult | undefined>((a, s) => (!a || grew(s) > grew(a) ? s : a), undefined);
  const control = worst && controls.find((c) => c.stormEvents === worst.stormEvents);
  const exact = all.every(
    (s) => s.stalled && accounted(s.stalled, s.emitted) === 1 && accounted(s.reader, s.emitted) === 1 && s.stalled.lostSlow + s.reader.lostSlow === s.metricLostSlow,
  );
  return [
    {
      goal: `stalled Watch client: agent RSS flat as the storm grows (peak − start of the largest storm within ${mbText(FLAT_BYTES)} of the smallest's)`,
      measured:
        flat !== undefined
          ? `peak − start ${mbText(grew(small!))} at ${sizes(small!)}, ${mbText(grew(large!))} at ${sizes(large!)}`
          : 'needs two storm sizes',
      met: flat !== undefined ? flat <= FLAT_BYTES : null,
    },
    {
      goal: `stalled Watch client: agent peak RSS ≤ start + ${mbText(STALLED_RSS_BUDGET_BYTES)}`,
      measured: worst
        ? `${mbText(worst.rss.start)} → ${mbText(worst.rss.peak)} at ${sizes(worst)}` +
          (control ? `; the same storm with no stalled client: ${mbText(control.rss.start)} → ${mbText(control.rss.peak)}` : '')
        : 'not run',
      met: worst ? grew(worst) <= STALLED_RSS_BUDGET_BYTES : null,
    },
    {
      goal: 'stalled Watch client: every event it missed reported, and the reader still gets or is told of every event',
      measured: all.length
        ? `(delivered + reported lost) ÷ emitted in ${all.length} runs: stalled client ${[...new Set(all.map((s) => accounted(s.stalled ?? { delivered: 0, lostRing: 0, lostSlow: 0 }, s.emitted).toFixed(3)))].join(', ')}, ` +
          `reader ${[...new Set(all.map((s) => accounted(s.reader, s.emitted).toFixed(3)))].join(', ')}; the agent's slow-loss metric ${all.every((s) => s.stalled && s.stalled.lostSlow + s.reader.lostSlow === s.metricLostSlow) ? 'equals' : '**differs from**'} what the clients were told`
        : 'not run',
      met: all.length ? exact : null,
    },
  ];
}
