/**
 * What runs: scenarios, their rate steps, trial lengths and repetitions, for
 * the full run and for --quick (under two minutes on a 2-core machine).
 */
import type { LoadSpec } from './loadgen.js';

export const SCENARIOS = ['resets', 'churn', 'acceptq', 'pipeline', 'stalled'] as const;
export type ScenarioName = (typeof SCENARIOS)[number];

/**
 * `wstrace-all`: the same agent and subscriber as `wstrace`, started with
 * `--event-budget 0`, so every event travels the ring, the agent and gRPC
 * (the forensics setting). It runs on machine-limited steps only: a paced
 * step that reaches its target would show ~1.000 by construction.
 */
export const ARMS = ['untraced', 'wstrace', 'bpftrace', 'wstrace-all'] as const;
export type Arm = (typeof ARMS)[number];
/** Arms that run a wstrace agent (exactness, delivery and footprint come from their trials). */
export const AGENT_ARMS: readonly Arm[] = ['wstrace', 'wstrace-all'];
/** How the tables name each arm. */
export const ARM_TITLES: Record<Arm, string> = {
  untraced: 'untraced',
  wstrace: 'wstrace',
  bpftrace: 'bpftrace',
  'wstrace-all': 'wstrace, every event',
};

export interface Step {
  readonly scenario: Exclude<ScenarioName, 'pipeline' | 'stalled'>;
  /** "20k/s", "max", "max, 2 threads", "ACK-stage max". */
  readonly label: string;
  readonly load: LoadSpec;
  /** What one op is, for the work-rate column. */
  readonly unit: string;
  /**
   * The load is built so every ListenOverflows is an ACK-stage drop (the
   * generator counts the drops it built), so wstrace's ACK-stage count can be
   * held to the kernel's total even with the SYN-stage hook blind.
   */
  readonly ackOnly?: boolean;
  /**
   * A second load run at the same time: in the same namespace (a mixed
   * workload) or, with `neighbourElsewhere`, in another namespace wstrace
   * does not trace (what happens elsewhere must not change the counts).
   */
  readonly neighbour?: LoadSpec;
  readonly neighbourElsewhere?: boolean;
  /**
   * Resets received are refereed by the kernel's own trace events (an ftrace
   * instance on these local ports, every arm alike) instead of the MIB
   * derivation, which cannot see resets that reach closing sockets (FIN_WAIT1/2:
   * neither TcpEstabResets nor TcpAttemptFails counts them). Only on paced steps:
   * the trace's own cost would blur a machine-limited rate.
   */
  readonly traceResetPorts?: readonly number[];
  /** Repetitions per arm for this step. */
  readonly reps: number;
  /** Repetitions of the `wstrace-all` arm (the first ones of `reps`); 0 on paced steps. */
  readonly everyEventReps: number;
}

/** A step before its repetitions are set. */
type StepShape = Omit<Step, 'reps' | 'everyEventReps'>;

export interface Plan {
  readonly quick: boolean;
  /** Repetitions per arm of machine-limited steps. */
  readonly reps: number;
  /** Repetitions of the `wstrace-all` arm on machine-limited steps. */
  readonly everyEventReps: number;
  readonly steps: Step[];
  readonly pipeline: boolean;
  /** Closed-port connects queued for the pipeline ceiling (two events each). */
  readonly ceilingConnects: number;
  /** How long to wait for the subscriber to account for every event after a trial. */
  readonly settleMs: number;
  /**
   * Load run in every trial's namespace, every arm, after the tracer starts
   * and before the measured load (none in --quick): an always-on agent has
   * compiled its hot paths long before a storm, a fresh one has not.
   * Left out of the timed figures and of both sides of the exactness checks.
   */
  readonly warmup: LoadSpec | undefined;
  /** Runs with a Watch client that never reads (and their controls, without it); empty: not run. */
  readonly stalled: StalledStep[];
}

export interface StalledStep {
  /** Storm size: the agent's RSS must not grow with it. */
  readonly stormEvents: number;
  /** False: the control, the same storm with the reading subscriber only (what the storm alone costs). */
  readonly stalledClient: boolean;
  /** --subscriber-queue; the agent's default when absent. */
  readonly subscriberQueue?: number;
}

/**
 * --quick: repetitions of the every-event arm on each unpaced step. One, not
 * the other arms' two: with two, --quick took 115 s on the quiet 2-core
 * machine and 131 s with one VM running beside it (each agent trial costs
 * ~2.5 s), too close to or over its two-minute bound.
 */
export const QUICK_EVERY_EVENT_REPS = 1;

const LISTEN_PORT = 5000;
const CLOSED_PORT = 9;
/** sockstat tw must not overflow net.ipv4.tcp_max_tw_buckets (131072 in a new namespace). */
const MAX_TIMEWAIT_PER_TRIAL = 100_000;

function label(rate: number, threads = 1): string {
  const r = rate === 0 ? 'max' : `${rate >= 1000 ? `${rate / 1000}k` : rate}/s`;
  return threads > 1 ? `${r}, ${threads} threads` : r;
}

function resets(rate: number, seconds: number, threads = 1): StepShape {
  return {
    scenario: 'resets',
    label: label(rate, threads),
    unit: 'resets sent/s',
    load: {
      mode: 'rst',
      rate,
      seconds,
      count: rate ? Math.ceil(rate * seconds) : 5_000_000,
      threads,
      // every 4th op a linger-0 close of an established connection, the rest closed-port connects
      flags: { l: 4, c: CLOSED_PORT, p: LISTEN_PORT },
    },
  };
}

function churn(rate: number, seconds: number): StepShape {
  return {
    scenario: 'churn',
    label: label(rate),
    unit: 'connections/s',
    load: {
      mode: 'churn',
      rate,
      seconds,
      count: Math.min(rate ? Math.ceil(rate * seconds) : Infinity, MAX_TIMEWAIT_PER_TRIAL),
      flags: { D: 4, p: LISTEN_PORT },
    },
  };
}

/**
 * Churn with a linger-0 reset storm beside it: resets sent after the socket
 * reached CLOSE (linger 0) next to sockets entering TIME_WAIT.
 */
function churnWithResets(rate: number, seconds: number, elsewhere: boolean): StepShape {
  const base = churn(rate, seconds);
  return {
    ...base,
    label: `${base.label} + resets ${elsewhere ? 'in another netns' : 'in the same netns'}`,
    neighbourElsewhere: elsewhere,
    neighbour: {
      mode: 'rst',
      rate: 20_000,
      seconds,
      count: Math.ceil(20_000 * seconds),
      // every 2nd op a linger-0 close
      flags: { l: 2, c: CLOSED_PORT, p: LISTEN_PORT + 100 },
    },
  };
}

function slowAccept(rate: number, seconds: number): StepShape {
  return {
    scenario: 'acceptq',
    label: `slow accept, ${label(rate)}`,
    unit: 'connects/s',
    load: {
      mode: 'slowaccept',
      rate,
      seconds,
      count: rate ? Math.ceil(rate * seconds) : 5_000_000,
      // 4 listeners, backlog 8, each accepting 200/s; clients close after 100 ms
      flags: { L: 4, b: 8, a: 200, H: 100, p: LISTEN_PORT },
    },
  };
}

/**
 * The WebSocket shape of issue 15: clients send their request and leave
 * after 50 ms, many before a slow server answers; those answers abort on
 * data (a reset, FIN_WAIT2 -> CLOSE without a timewait socket), the rest
 * end in TIME_WAIT on the server. TIME_WAIT must still equal the kernel's.
 */
function lateAnswers(rate: number, seconds: number): StepShape {
  const base = slowAccept(rate, seconds);
  return {
    ...base,
    label: `slow accept, late answers, ${label(rate)}`,
    load: { ...base.load, flags: { L: 4, b: 16, a: 200, H: 50, W: 1, p: LISTEN_PORT } },
    traceResetPorts: [LISTEN_PORT, LISTEN_PORT + 1, LISTEN_PORT + 2, LISTEN_PORT + 3],
  };
}

function ackStage(seconds: number): StepShape {
  return {
    scenario: 'acceptq',
    label: 'ACK-stage, max',
    unit: 'ACK-stage drops/s',
    ackOnly: true,
    load: { mode: 'ackstage', rate: 0, seconds, count: 5_000_000, flags: { b: 16, p: LISTEN_PORT } },
  };
}

/** 3 s of the reset storm's shape at 20k ops/s, on ports of its own (no TIME_WAIT left behind: linger-0 closes and closed-port connects). */
const WARMUP: LoadSpec = { mode: 'rst', rate: 20_000, seconds: 3, count: 60_000, flags: { l: 4, c: CLOSED_PORT, p: LISTEN_PORT + 200 } };

export function makePlan(quick: boolean, only: readonly ScenarioName[]): Plan {
  const t = quick ? 0.8 : 4;
  // --quick leaves out the paced reset storm: the unpaced one checks the same
  // counters at a higher rate (with it, --quick took 118-128 s on the 2-core machine).
  const steps: Array<StepShape> = quick
    ? [resets(0, t), churn(0, t), churnWithResets(10_000, t, false), slowAccept(20_000, t), lateAnswers(5_000, t), ackStage(t)]
    : [
        resets(5_000, t),
        resets(20_000, t),
        resets(50_000, t),
        resets(0, t),
        resets(0, t, 2),
        churn(5_000, 3),
        churn(15_000, 3),
        churn(0, 3),
        churnWithResets(10_000, 3, false),
        churnWithResets(10_000, 3, true),
        slowAccept(5_000, t),
        slowAccept(20_000, t),
        slowAccept(0, t),
        lateAnswers(5_000, t),
        ackStage(t),
      ];
  const want = new Set(only.length ? only : SCENARIOS);
  // --quick: alternation and medians where the machine sets the rate (overhead
  // is judged there); paced steps once per arm (exactness needs no median).
  const reps = (s: StepShape) => (!quick ? 3 : s.load.rate === 0 ? 2 : 1);
  // The every-event arm where the machine sets the rate only (the goal is judged there).
  const everyEventReps = quick ? QUICK_EVERY_EVENT_REPS : 3;
  return {
    quick,
    reps: quick ? 2 : 3,
    everyEventReps,
    steps: steps
      .filter((s) => want.has(s.scenario))
      .map((s) => ({ ...s, reps: reps(s), everyEventReps: s.load.rate === 0 ? Math.min(everyEventReps, reps(s)) : 0 })),
    pipeline: want.has('pipeline'),
    ceilingConnects: quick ? 100_000 : 400_000,
    settleMs: quick ? 3000 : 6000,
    warmup: quick ? undefined : WARMUP,
    stalled: want.has('stalled') ? stalledSteps(quick) : [],
  };
}

/**
 * --quick: the stalled client at two storm sizes, 0.5M and 1M events (about
 * 10 s; 1M and 2M took 16 s and pushed --quick past two minutes). Full: 1M and
 * 3M events, each with its control, then 3M with a small and a large queue
 * (the client's cost follows the queue limit, not the storm; about 3 min).
 */
function stalledSteps(quick: boolean): StalledStep[] {
  if (quick) return [500_000, 1_000_000].map((stormEvents) => ({ stormEvents, stalledClient: true }));
  return [
    ...[1_000_000, 3_000_000].flatMap((stormEvents) => [
      { stormEvents, stalledClient: false },
      { stormEvents, stalledClient: true },
    ]),
    { stormEvents: 3_000_000, stalledClient: true, subscriberQueue: 1000 },
    { stormEvents: 3_000_000, stalledClient: true, subscriberQueue: 100_000 },
  ];
}

/** The arms repetition `rep` of `step` runs, of those available (bpftrace may be missing), before rotation. */
export function stepArms(step: Step, rep: number, available: readonly Arm[]): Arm[] {
  return available.filter((a) => a !== 'wstrace-all' || rep < step.everyEventReps);
}

/** Arm order for repetition `rep`: rotated, so no arm always runs first (A/B/C, B/C/A, ...). */
export function armOrder(rep: number, arms: readonly Arm[]): Arm[] {
  const k = rep % arms.length;
  return [...arms.slice(k), ...arms.slice(0, k)];
}
