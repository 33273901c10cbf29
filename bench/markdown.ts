/** The report as markdown tables: what `npm run bench` prints and BENCHMARKS.md holds. */
import type { CeilingResult, LossResult } from './pipeline.js';
import type { RecorderResult } from './recorder.js';
import type { SoakResult } from './soak.js';
import { accounted, type StalledResult } from './stalled.js';
import { ARM_TITLES } from './plan.js';
import { BPFTRACE_TOLERANCE, EVERY_EVENT_GOAL, loadLimited, RECEIVED_REFEREE,
  TRACED_RECEIVED_REFEREE, type Delivery, type Footprint, type Goal, type StepSummary } from './summary.js';
import type { LoadSpec } from './loadgen.js';
import type { Machine } from './machine.js';

function table(head: string[], rows: Array<Array<string | number>>): string {
  const line = (cells: Array<string | number>) => `| ${cells.map(String).join(' | ')} |`;
  return [line(head), line(head.map(() => '---')), ...rows.map(line)].join('\n');
}

function k(x: number): string {
  if (!Number.isFinite(x)) return '—';
  if (x >= 10_000) return `${(x / 1000).toFixed(0)}k`;
  if (x >= 1000) return `${(x / 1000).toFixed(1)}k`;
  return x.toFixed(0);
}

function ratio(x: number | undefined | null, digits = 3): string {
  if (x === undefined) return '—';
  if (x === null) return 'blind';
  if (!Number.isFinite(x)) return '∞';
  return x.toFixed(digits);
}

function deliveryRow(step: string, arm: string, d: Delivery, f: Footprint): Array<string | number> {
  return [
    step,
    arm,
    d.emitted,
    d.delivered,
    d.summarised,
    d.lostKernelRing,
    d.lostSlow,
    ratio(d.deliveredRatio),
    ratio(d.accountedRatio),
    Number.isFinite(f.cpuSecondsPer100k) ? f.cpuSecondsPer100k.toFixed(2) : '—',
    f.peakRssBytes ? mb(f.peakRssBytes) : '—',
  ];
}

const fixed = (x: number | undefined, digits: number) => (x === undefined || !Number.isFinite(x) ? '—' : x.toFixed(digits));
const mb = (bytes: number) => `${(bytes / 1e6).toFixed(1)} MB`;

export interface Report {
  readonly machine: Machine;
  readonly quick: boolean;
  readonly reps: number;
  /** Repetitions of the every-event arm (--event-budget 0) on unpaced steps. */
  readonly everyEventReps: number;
  /** Run before each timed trial (Plan.warmup); none: each tracer measured from its start. */
  readonly warmup: LoadSpec | undefined;
  readonly steps: StepSummary[];
  readonly ceilings: CeilingResult[];
  readonly recorders: RecorderResult[];
  readonly soaks: SoakResult[];
  readonly losses: LossResult[];
  readonly stalled: StalledResult[];
  readonly goals: Goal[];
  readonly hooks: string[];
  readonly blind: string[];
  readonly bpftrace: string;
  readonly seconds: number;
}

const signed = (x: number) => `${x >= 0 ? '+' : ''}${x.toFixed(2)}`;

export function renderMarkdown(r: Report): string {
  const m = r.machine;
  const out: string[] = [];
  out.push(
    `Machine: ${m.cpus} CPUs (${m.cpuModel}), ${(m.memoryBytes / 2 ** 30).toFixed(0)} GiB, Linux ${m.kernel}, Node ${m.node}, ${r.bpftrace}.`,
    `Run: ${r.quick ? '--quick' : 'full'}, ${r.reps} repetitions per arm${r.quick ? ' on unpaced steps, 1 on paced ones' : ''}, arms alternated (rotated order each repetition), ` +
      `"wstrace, every event" (--event-budget 0) on unpaced steps only, ${r.everyEventReps} repetition${r.everyEventReps === 1 ? '' : 's'}` +
      `${r.everyEventReps < r.reps ? ' (fewer than the other arms, to keep --quick under two minutes)' : ''}; ` +
      `${r.warmup ? `every trial, every arm, first runs a ${r.warmup.seconds} s ${r.warmup.mode} load at ${r.warmup.rate / 1000}k ops/s in its namespace, untimed and left out of both sides of the exactness checks (the agent measured warm, as an always-on agent is); ` : 'each tracer measured from its start (a cold agent); '}` +
      `${r.seconds.toFixed(0)} s. Load average ${m.loadBefore.map((x) => x.toFixed(2)).join(' ')} before, ` +
      `${m.loadAfter.map((x) => x.toFixed(2)).join(' ')} after; CPUs ${Math.round(m.busyOutsideBench * 100)}% busy with other work just before the run.`,
    `wstrace hooks live: ${r.hooks.join(', ') || 'none'}. Blind: ${r.blind.join('; ') || 'none'}.`,
    '',
    '### Goals',
    '',
    table(
      ['goal', 'measured', 'status'],
      r.goals.map((g) => [g.goal, g.measured, g.met === null ? 'not measured' : g.met ? 'met' : '**not met**']),
    ),
  );

  const scenarios = [...new Set(r.steps.map((s) => s.scenario))];
  for (const sc of scenarios) {
    const steps = r.steps.filter((s) => s.scenario === sc);
    out.push('', `### ${TITLES[sc] ?? sc}`, '');
    out.push(
      '**Exactness** (wstrace agent limited to the bench namespace, vs the namespace\'s own counters; trials of both agent arms, default budget and every event; the worst trial shown)',
      '',
      table(
        ['step', 'events/s', 'counter', 'wstrace', 'kernel', 'referee', 'ratio', 'exact trials'],
        steps.flatMap((s) =>
          s.exact.map((e) => [
            s.step,
            k(s.eventsPerSecond),
            e.counter,
            e.wstrace,
            e.kernel,
            e.referee === RECEIVED_REFEREE ? 'derived (see notes)' : e.referee === TRACED_RECEIVED_REFEREE ? 'trace events (see notes)' : e.referee,
            ratio(e.ratio) + (e.note && e.ratio !== null ? ` (${e.note})` : e.note ? ` — ${e.note}` : ''),
            `${e.exactTrials}/${e.trials}`,
          ]),
        ),
      ),
      '',
      '**Delivery and footprint** (one gRPC subscriber; all trials of the step and arm summed; ratios of the worst trial. "every event": the agent with --event-budget 0, so nothing is summarised and delivered + lost must equal emitted)',
      '',
      table(
        ['step', 'arm', 'emitted', 'delivered', 'summarised', 'lost: kernel', 'lost: slow', '(delivered + summarised) ÷ emitted', '(delivered + summarised + lost) ÷ emitted', 'agent CPU s / 100k events', 'agent peak RSS'],
        steps.flatMap((s) => [
          deliveryRow(s.step, ARM_TITLES.wstrace, s.delivery, s.footprint),
          ...(s.everyEvent ? [deliveryRow(s.step, ARM_TITLES['wstrace-all'], s.everyEvent.delivery, s.everyEvent.footprint)] : []),
        ]),
      ),
      '',
      '**Overhead** (work rate achieved by the same load generator; medians; generator CPU per op shows the in-kernel cost even when the rate is paced; ' +
        'wstrace: default settings; every event (e): the same agent with --event-budget 0, unpaced steps only)',
      '',
      table(
        ['step', 'unit', 'untraced', 'wstrace', 'bpftrace', 'every event', 'wstrace ÷ untraced', 'bpftrace ÷ untraced', 'wstrace ÷ bpftrace', 'every event ÷ untraced', 'gen CPU µs/op u / w / b / e', 'BPF ns/op w / b / e', 'BPF ns/run w / b / e'],
        steps.map((s) => [
          s.step + (loadLimited(s) ? '' : ' (paced: target reached)'),
          s.unit,
          k(s.arms.untraced?.median ?? NaN),
          k(s.arms.wstrace?.median ?? NaN),
          k(s.arms.bpftrace?.median ?? NaN),
          k(s.arms['wstrace-all']?.median ?? NaN),
          ratio(s.overhead.wstrace),
          ratio(s.overhead.bpftrace),
          ratio(s.overhead.wstraceVsBpftrace),
          ratio(s.overhead.everyEvent),
          (['untraced', 'wstrace', 'bpftrace', 'wstrace-all'] as const).map((a) => s.arms[a]?.cpuUsPerOp.toFixed(2) ?? '—').join(' / '),
          (['wstrace', 'bpftrace', 'wstrace-all'] as const).map((a) => fixed(s.arms[a]?.bpfNsPerOp, 0)).join(' / '),
          (['wstrace', 'bpftrace', 'wstrace-all'] as const).map((a) => fixed(s.arms[a]?.bpfNsPerRun, 0)).join(' / '),
        ]),
      ),
      '',
      '**Where the CPU goes** (steps the machine limits; CPU µs per op during the load, medians: every CPU busy (tick-sampled), the load generator, ' +
        "the arm's own process (agent or bpftrace), the bench process (the gRPC subscriber decoding every message), and the rest (softirq work " +
        'in ksoftirqd, kernel threads, anything else running). The BPF programs run inside these, mostly in the generator and its softirqs. ' +
        'On a saturated machine the rate falls as the busy µs per op rise)',
      '',
      table(
        ['step', 'arm', 'ops/s', 'all CPUs', 'generator', 'agent / bpftrace', 'subscriber', 'rest', 'of which BPF', 'all CPUs − untraced'],
        steps
          .filter((s) => loadLimited(s))
          .flatMap((s) =>
            (['untraced', 'wstrace', 'bpftrace', 'wstrace-all'] as const).flatMap((a) => {
              const st = s.arms[a];
              if (!st) return [];
              const u = st.usPerOp;
              const rest = u.machine - st.cpuUsPerOp - (u.arm ?? 0) - u.subscriber;
              const base = s.arms.untraced?.usPerOp.machine;
              return [
                [
                  s.step,
                  ARM_TITLES[a],
                  k(st.median),
                  u.machine.toFixed(2),
                  st.cpuUsPerOp.toFixed(2),
                  u.arm === undefined ? '—' : u.arm.toFixed(2),
                  u.subscriber.toFixed(2),
                  rest.toFixed(2),
                  st.bpfNsPerOp === undefined ? '—' : (st.bpfNsPerOp / 1000).toFixed(2),
                  a === 'untraced' || base === undefined ? '—' : signed(u.machine - base),
                ],
              ];
            }),
          ),
      ),
    );
  }

  if (r.ceilings.length) {
    out.push(
      '',
      '### Pipeline ceiling',
      '',
      'A closed-port storm fills the kernel ring while the consumer is held (JS thread blocked, or the agent stopped with SIGSTOP); then the consumer is released and timed until it has taken every event. Except with --quick, the gRPC path\'s agent first drains a live storm a quarter of the backlog\'s size, as every trial\'s agent is warmed: an always-on agent meets a backlog with its send path compiled and its heap grown.',
      '',
      table(
        ['path', 'events', 'seconds', 'events/s', 'ring drops', 'lost (reported)', 'agent CPU s / 100k events', 'subscriber CPU s / 100k events'],
        r.ceilings.map((c) => [
          c.path === 'addon'
            ? 'ring → addon → decode → JS (in-process tracer.subscribe)'
            : `ring → agent → gRPC → one subscriber${c.warmed ? ' (agent warmed by a live storm first)' : ' (cold agent)'}`,
          c.events,
          c.seconds.toFixed(3),
          k(c.eventsPerSecond),
          c.ringDrops,
          c.lost,
          c.agentCpuPer100k === undefined ? '—' : fixed(c.agentCpuPer100k, 3),
          c.subscriberCpuPer100k === undefined ? '—' : fixed(c.subscriberCpuPer100k, 3),
        ]),
      ),
    );
  }

  if (r.recorders.length) {
    out.push(
      '',
      '### Recorder',
      '',
      '`wstrace record --connect` to an agent stopped while a closed-port storm fills its ring, then released: the recorder writes the Watch messages as the agent sent them. Its CPU from the release until the file stops growing, per 100k events written.',
      '',
      table(
        ['events recorded', 'emitted', 'seconds', 'events/s', 'recorder CPU s / 100k events', 'recorder peak RSS', 'file'],
        r.recorders.map((c) => [c.recorded, c.emitted, c.seconds.toFixed(3), k(c.eventsPerSecond), c.cpuPer100k.toFixed(3), mb(c.peakRssBytes), mb(c.fileBytes)]),
      ),
    );
  }

  if (r.soaks.length) {
    out.push(
      '',
      '### Soak',
      '',
      'A `wstrace agent` with its default settings and one reading subscriber under a paced closed-port load (two events a connect); its VmRSS sampled every second. The slope is a least-squares fit after the warm-up (the first minute, or fifth of a shorter run).',
      '',
      table(
        ['minutes', 'events/s', 'emitted', '(delivered + summarised + lost) ÷ emitted', 'RSS start', 'after warm-up', 'end', 'peak', 'slope MB/min', 'fitted rise', 'agent CPU s / 100k events'],
        r.soaks.map((s) => [
          s.minutes,
          k(s.eventsPerSecond),
          s.emitted,
          ratio(s.accounted),
          mb(s.rss.start),
          mb(s.rss.warm),
          mb(s.rss.end),
          mb(s.rss.peak),
          (s.slopeBytesPerMinute / 1e6).toFixed(2),
          mb(s.fittedRiseBytes),
          s.agentCpuPer100k.toFixed(3),
        ]),
      ),
    );
  }

  if (r.losses.length) {
    out.push(
      '',
      '### Delivery when the kernel ring overflows',
      '',
      'A `wstrace agent` with a small ring is stopped (SIGSTOP) during a closed-port storm, so the kernel ring fills and drops; then it runs again. Every event must arrive or be reported in a lost-events notice.',
      '',
      table(
        ['ring', 'emitted', 'kernel ring drops', 'delivered', 'reported lost: ring', 'reported lost: slow', '(delivered + reported) ÷ emitted'],
        r.losses.map((l) => [`${l.ringBytes / 1024} KiB`, l.emitted, l.ringDrops, l.delivered, l.reportedRing, l.reportedSlow, ratio(l.accounted)]),
      ),
    );
  }

  if (r.stalled.length) {
    out.push(
      '',
      '### A Watch client that never reads',
      '',
      `A \`wstrace agent\` with the bench's reading subscriber and a second client that takes the first message and then reads nothing (its HTTP/2 window stays shut), through an unpaced closed-port storm on two threads. Agent VmRSS sampled every 100 ms from just before the storm until every event was handled; "control" is the same storm without the stalled client. Afterwards the stalled client reads again: what it never read must come back as lost-event notices.`,
      '',
      table(
        ['storm', 'stalled client', '--subscriber-queue', 'emitted', 'events/s', 'agent RSS start', 'peak', 'end', 'peak − start', 'peak ÷ start', 'reader (delivered + lost) ÷ emitted', 'stalled client: delivered / reported lost', 'stalled (delivered + lost) ÷ emitted', "agent's slow-loss metric = what the clients were told"],
        r.stalled.map((s) => [
          `${s.stormEvents / 1e6}M events`,
          s.stalledClient ? 'yes' : 'no (control)',
          s.subscriberQueue,
          s.emitted,
          k(s.emitted / s.stormSeconds),
          mb(s.rss.start),
          mb(s.rss.peak),
          mb(s.rss.end),
          mb(s.rss.peak - s.rss.start),
          ratio(s.rss.peak / s.rss.start, 2),
          ratio(accounted(s.reader, s.emitted)),
          s.stalled ? `${s.stalled.delivered} / ${s.stalled.lostSlow + s.stalled.lostRing}` : '—',
          s.stalled ? ratio(accounted(s.stalled, s.emitted)) : '—',
          s.stalled ? (s.stalled.lostSlow + s.reader.lostSlow === s.metricLostSlow ? `yes (${s.metricLostSlow})` : `**no** (${s.metricLostSlow})`) : '—',
        ]),
      ),
    );
  }

  out.push(
    '',
    '### Notes',
    '',
    `- Resets received have no MIB counter of their own. Referee: ${RECEIVED_REFEREE}. ` +
      'TcpEstabResets alone is wrong twice over: it counts the aborting side of a linger-0 or unread-data close (which receives no reset) and misses refused connects (a reset received in SYN_SENT, counted in TcpAttemptFails); a reset to a request socket (EmbryonicRsts) fires no tcp_receive_reset.',
    `- Resets received in the late-answers step: the derivation cannot follow that load (resets reaching closing sockets, FIN_WAIT1/2, are in neither TcpEstabResets nor TcpAttemptFails, and its aborts on data leave FIN_WAIT1/2, not ESTABLISHED). Referee there: the kernel's own tcp_receive_reset events on the step's ports (a private ftrace instance, in every arm's trial alike, with its overrun count checked), less those its own socket answered at once, on the same CPU, with a reset: tcp_reset() on data to a socket closed for reading (TCPAbortOnData), which no peer sent. A real reset is never answered with one.`,
    '- TIME_WAIT referee: TcpExtTW, which this kernel counts as each timewait socket is made (checked: it equals the sockstat `tw` rise in the churn steps, where no TIME_WAIT can end early). The sockstat `tw` rise alone undercounts when the server holds the TIME_WAIT and a client reuses the port (a SYN on the same 4-tuple ends it); the table notes where the two differ. Each trial has a fresh namespace with `tcp_tw_reuse=0` and `tcp_rfc1337=1`, lasts well under 60 s and stays under `tcp_max_tw_buckets`.',
    '- Listen overflows: ListenOverflows counts both the SYN stage and the ACK stage. wstrace counts both with tracepoints alone (Linux 6.3+): where each SYN or ACK to a listener ends (consume_skb, kfree_skb), the rise of that CPU\'s ListenOverflows goes to the packet\'s listener, whichever path dropped it (a SYN at a full queue, a queued request\'s ACK, a SYN cookie\'s ACK), and a rise found where a packet begins (netif_receive_skb: counted where the kernel ran no BPF program) is counted as the namespace\'s unattributed drops; elsewhere fentry/kprobe on tcp_conn_request count the SYN stage. Only where neither exists does the table say "blind" instead of printing a ratio. The ACK-stage step is built so every overflow happens at the ACK stage (checked: ListenOverflows equals the drops the generator built).',
    '- BPF ns/op and ns/run: the kernel\'s own accounting of the arm\'s probe programs (kernel.bpf_stats_enabled, on for the whole run, so both traced arms pay its clock reads), over the load, divided by the generator\'s ops or by program runs. The probes fire for every namespace, so other traffic on the machine lands here too. What the wstrace arm loses beyond this is user space: the agent draining the ring, encoding and sending, and the subscriber decoding, on the same CPUs as the load.',
    '- Emitted = the kernel side\'s own totals (records written + ring reserve failures + events beyond the rate budget counted in summary rows + those the summary table had no room for), read from the agent\'s BPF map with bpftool, not through the agent. Summarised = events the subscriber got in summary rows (the wstrace arm runs the agent\'s default budget); the "every event" arm, the pipeline ceiling, ring-loss and stalled-client runs use --event-budget 0, as they measure the event path.',
    `- Overhead is judged on steps whose rate the machine sets (unpaced, or a paced target not reached); paced steps that reach their target show ~1.000 by construction, and their generator CPU per op shows the in-kernel cost instead. "Not worse than bpftrace" allows ${BPFTRACE_TOLERANCE * 100}% run-to-run noise. Both agent arms include one gRPC subscriber in the bench process; "every event ÷ untraced" (the agent with --event-budget 0) is judged against ${EVERY_EVENT_GOAL.toFixed(2)} on the unpaced steps, where it runs; bpftrace counts in kernel maps only and prints at exit.`,
  );
  return out.join('\n');
}

const TITLES: Record<string, string> = {
  resets: 'Reset storm (closed-port connects, every 4th op a linger-0 close)',
  churn:
    'Connection churn (connect, accept, client closes first → TIME_WAIT; "+ resets": a linger-0 reset storm runs at the same time, in the same or in another, untraced namespace)',
  acceptq: 'Accept-queue overflow (small backlogs, slow accept; and an ACK-stage-only load)',
};
