/**
 * `npm run bench [-- --quick] [--scenario NAME]... [--json-only]`
 *
 * Runs every scenario's rate steps with the arms alternated (untraced,
 * wstrace agent + one gRPC subscriber, bpftrace; on unpaced steps also the
 * agent with no event budget), each trial in a fresh
 * network namespace, then the pipeline ceiling and a Watch client that never
 * reads through reset storms of millions of events; writes build/bench/results.json
 * and results.md and prints the markdown (or, with --json-only, the JSON).
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { blindNotes, openTracer } from '../src/kernel/index.js';
import { emittedTotal } from './agent.js';
import { enableBpfStats } from './bpfstats.js';
import { bpftraceScript, bpftraceVersion, ensureTracefs, listenOverflowReason } from './bpftrace.js';
import { Cleanup, Interrupted } from './cleanup.js';
import { BenchError } from './errors.js';
import { buildLoadgen } from './loadgen.js';
import { describeMachine } from './machine.js';
import { renderMarkdown, type Report } from './markdown.js';
import { mibDelta } from './netns.js';
import { addonCeiling, grpcCeiling, lossCheck, type CeilingResult, type LossResult } from './pipeline.js';
import { recorderCost, type RecorderResult } from './recorder.js';
import { SOAK_EVENTS_PER_SECOND, SOAK_MINUTES, soakGoal, soakRun, type SoakResult } from './soak.js';
import { ARMS, armOrder, makePlan, SCENARIOS, stepArms, type Arm, type ScenarioName } from './plan.js';
import { loadAverage } from './proc.js';
import { stalledRun, type StalledResult } from './stalled.js';
import { goals, summarizeStep } from './summary.js';
import { runTrial, type Trial } from './trial.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const OUT_DIR = join(ROOT, 'build', 'bench');
const USAGE = `usage: npm run bench [-- --quick] [--scenario ${SCENARIOS.join('|')}]... [--soak] [--soak-minutes N] [--json-only]`;

interface Flags {
  readonly quick: boolean;
  readonly jsonOnly: boolean;
  readonly scenarios: ScenarioName[];
  /** Minutes of the soak (--soak: SOAK_MINUTES); undefined: no soak. */
  readonly soakMinutes: number | undefined;
}

function parseFlags(argv: string[]): Flags | 'help' {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        quick: { type: 'boolean' },
        scenario: { type: 'string', multiple: true },
        'json-only': { type: 'boolean' },
        soak: { type: 'boolean' },
        'soak-minutes': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    const e = err as Error & { code?: string };
    const arg = /'([^']+)'/.exec(e.message)?.[1] ?? '';
    const what =
      e.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION'
        ? `unknown flag ${arg}`
        : e.code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL'
          ? `unexpected argument ${arg}`
          : /does not take an argument/.test(e.message)
            ? `${arg} takes no value`
            : `${arg.replace(/ <value>$/, '')} needs a value`;
    throw new BenchError(`${what}; ${USAGE}`);
  }
  if (values.help) return 'help';
  const scenarios = (values.scenario ?? []).flatMap((s) => s.split(','));
  for (const s of scenarios) {
    if (!(SCENARIOS as readonly string[]).includes(s)) {
      throw new BenchError(`unknown scenario "${s}": choose from ${SCENARIOS.join(', ')}.`);
    }
  }
  let soakMinutes = values.soak ? SOAK_MINUTES : undefined;
  if (values['soak-minutes'] !== undefined) {
    const m = Number(values['soak-minutes']);
    if (!Number.isFinite(m) || m <= 0 || m > 24 * 60) throw new BenchError(`--soak-minutes takes minutes from 0 to 1440 (fractions allowed), not "${values['soak-minutes']}".`);
    soakMinutes = m;
  }
  return { quick: values.quick ?? false, jsonOnly: values['json-only'] ?? false, scenarios: scenarios as ScenarioName[], soakMinutes };
}

function checkMachine(): void {
  if (process.getuid?.() !== 0) {
    throw new BenchError('the benchmark loads BPF and creates network namespaces, so it needs root: run `sudo npm run bench`.');
  }
  for (const tool of ['ip', 'bpftool']) {
    try {
      execFileSync(tool, ['-V'], { stdio: 'ignore' });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        throw new BenchError(`${tool} is missing: run \`sudo ./setup.sh\` first.`);
      }
    }
  }
}

/** Namespaces left by a bench run that was killed (SIGKILL skips clean-up): wsb<pid>-... with that pid gone. */
function removeStaleNamespaces(): void {
  let list = '';
  try {
    list = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' });
  } catch {
    return;
  }
  for (const m of list.matchAll(/^(wsb(\d+)-\S+)/gm)) {
    const pid = Number(m[2]);
    let alive = true;
    try {
      process.kill(pid, 0);
    } catch {
      alive = false;
    }
    if (!alive || pid === process.pid) execFileSync('ip', ['netns', 'del', m[1]!], { stdio: 'ignore' });
  }
}

/** Keeps the JSON small: nonzero MIB deltas and sockstat before/after instead of every counter twice. */
function compactTrial(t: Trial): Record<string, unknown> {
  const { before, after, ...rest } = t;
  const mib: Record<string, number> = {};
  for (const key of Object.keys(after.mib)) {
    const v = mibDelta(before, after, key);
    if (v !== 0) mib[key] = v;
  }
  return { ...rest, mibDelta: mib, sockstatBefore: before.sockstat, sockstatAfter: after.sockstat };
}

async function main(flags: Flags, cleanup: Cleanup, say: (line: string) => void): Promise<void> {
  checkMachine();
  removeStaleNamespaces();
  const started = Date.now();
  // --soak alone runs the soak alone; with --scenario, those scenarios too.
  const soakOnly = flags.soakMinutes !== undefined && !flags.scenarios.length;
  const full = makePlan(flags.quick, flags.scenarios);
  const plan = soakOnly ? { ...full, steps: [], pipeline: false, stalled: [] } : full;
  const machine = await describeMachine();
  const loadgen = buildLoadgen(ROOT);
  const tmpDir = mkdtempSync(join(tmpdir(), 'wstrace-bench-'));
  cleanup.add('temp dir', () => rmSync(tmpDir, { recursive: true, force: true }));
  let nsCount = 0;
  const nsName = (tag: string) => `wsb${process.pid}-${++nsCount}-${tag}`;

  const probe = await openTracer({ resolveOwners: false });
  const hooks = probe.hooks.filter((h) => h.attached).map((h) => `${h.signal} (${h.variant} ${h.hook})`);
  const blind = [...probe.hooks.filter((h) => !h.attached).map((h) => `${h.signal} (${h.hook})`), ...blindNotes(probe.hooks)];
  probe.close();

  let bpftraceInfo = bpftraceVersion();
  let script: string | undefined;
  let arms: Arm[] = [...ARMS];
  if (bpftraceInfo && plan.steps.length) {
    await ensureTracefs(cleanup);
    script = bpftraceScript(listenOverflowReason());
  } else if (!bpftraceInfo) {
    arms = arms.filter((a) => a !== 'bpftrace');
    bpftraceInfo = 'bpftrace not installed (arm skipped: run sudo ./setup.sh)';
    say('bench: bpftrace is not installed, so the bpftrace arm is skipped (sudo ./setup.sh installs it).');
  }

  const bpfStats = plan.steps.length ? enableBpfStats(cleanup) : false;
  if (plan.steps.length && !bpfStats) say('bench: cannot turn on kernel.bpf_stats_enabled, so BPF run time is not measured.');

  const failures: string[] = [];
  const failed = (what: string, err: unknown): undefined => {
    if (cleanup.stopping || err instanceof Interrupted) throw err;
    const msg = `${what} failed: ${(err as Error).message ?? String(err)}`;
    failures.push(msg);
    say(`bench: ${msg}`);
    return undefined;
  };
  let total = 0;
  for (const s of plan.steps) for (let rep = 0; rep < s.reps; rep++) total += stepArms(s, rep, arms).length;
  const trials: Trial[] = [];
  const ctx = { root: ROOT, loadgen, cleanup, tmpDir, bpftraceScript: script, settleMs: plan.settleMs, warmup: plan.warmup, nsName };
  for (const step of plan.steps) {
    for (let rep = 0; rep < step.reps; rep++) {
      // Rotated among the arms this repetition runs (the every-event arm: unpaced steps only).
      for (const arm of armOrder(rep, stepArms(step, rep, arms))) {
        if (cleanup.stopping) return;
        const began = Date.now();
        // One failed trial (a generator that died, say) is tried once more, then left out and reported.
        const what = `trial ${step.scenario} ${step.label} ${arm} #${rep + 1}`;
        const t =
          (await runTrial(ctx, step, arm, rep).catch((err: unknown) => {
            if (cleanup.stopping || err instanceof Interrupted) throw err;
            say(`bench: ${what} failed, trying it once more: ${(err as Error).message ?? String(err)}`);
            return undefined;
          })) ??
          (await runTrial(ctx, step, arm, rep).catch((err: unknown) => failed(what, err)));
        if (!t) continue;
        trials.push(t);
        const w = t.wstrace;
        const events = w ? ` ${emittedTotal(w.emitted)} events, ${w.received.delivered} delivered, ${w.received.summarised} summarised` : '';
        say(
          `bench: [${trials.length}/${total}] ${step.scenario} ${step.label} ${arm} #${rep + 1}: ` +
            `${Math.round(t.load.rate)} ${step.unit} (${t.load.ops} ops in ${t.load.seconds.toFixed(2)} s)${events}; ` +
            `trial took ${((Date.now() - began) / 1000).toFixed(1)} s`,
        );
      }
    }
  }

  const ceilings: CeilingResult[] = [];
  if (plan.pipeline) {
    // The gRPC ceiling's agent is warmed as every trial's is (plan.warmup); --quick has no warm-up and measures it cold.
    const warmConnects = plan.warmup ? plan.ceilingConnects / 4 : undefined;
    const cctx = { root: ROOT, loadgen, cleanup, nsName, tmpDir, connects: plan.ceilingConnects, warmConnects };
    for (let rep = 0; rep < (plan.quick ? 1 : 3); rep++) {
      for (const fn of [addonCeiling, grpcCeiling]) {
        // A failure here must not throw away the scenario trials already run.
        const c = await fn(cctx).catch((err: unknown) => failed('pipeline ceiling', err));
        if (!c) continue;
        ceilings.push(c);
        say(`bench: pipeline ${c.path} #${rep + 1}: ${Math.round(c.eventsPerSecond)} events/s (${c.delivered} events in ${c.seconds.toFixed(3)} s)`);
      }
    }
  }

  const recorders: RecorderResult[] = [];
  if (plan.pipeline) {
    const cctx = { root: ROOT, loadgen, cleanup, nsName, tmpDir, connects: plan.ceilingConnects };
    for (let rep = 0; rep < (plan.quick ? 1 : 2); rep++) {
      const c = await recorderCost(cctx).catch((err: unknown) => failed('recorder cost', err));
      if (!c) continue;
      recorders.push(c);
      say(
        `bench: recorder #${rep + 1}: ${c.recorded} events in ${c.seconds.toFixed(3)} s (${Math.round(c.eventsPerSecond)} events/s), ` +
          `${c.cpuPer100k.toFixed(3)} CPU s per 100k events`,
      );
    }
  }

  const losses: LossResult[] = [];
  if (plan.pipeline) {
    const l = await lossCheck({ root: ROOT, loadgen, cleanup, nsName, tmpDir, connects: plan.ceilingConnects }).catch((err: unknown) =>
      failed('loss check', err),
    );
    if (l) {
      losses.push(l);
      say(
        `bench: loss check: ${l.emitted} emitted, ${l.ringDrops} dropped by the kernel ring, ` +
          `${l.delivered} delivered + ${l.reportedRing + l.reportedSlow} reported lost`,
      );
    }
  }

  const stalled: StalledResult[] = [];
  const sctx = { root: ROOT, loadgen, cleanup, nsName, tmpDir };
  for (const step of plan.stalled) {
    const what =
      `stalled-client run (${step.stormEvents} events` +
      `${step.subscriberQueue ? `, --subscriber-queue ${step.subscriberQueue}` : ''}${step.stalledClient ? '' : ', control: no stalled client'})`;
    const s = await stalledRun(sctx, step.stormEvents, step.stalledClient, step.subscriberQueue).catch((err: unknown) => failed(what, err));
    if (!s) continue;
    stalled.push(s);
    const mb = (b: number) => (b / 1e6).toFixed(0);
    say(
      `bench: ${what}: ${s.emitted} events in ${s.stormSeconds.toFixed(1)} s; agent RSS ${mb(s.rss.start)} → peak ${mb(s.rss.peak)} → ${mb(s.rss.end)} MB` +
        (s.stalled ? `; stalled client: ${s.stalled.delivered} delivered + ${s.stalled.lostSlow + s.stalled.lostRing} reported lost` : ''),
    );
  }

  const soaks: SoakResult[] = [];
  if (flags.soakMinutes !== undefined) {
    say(`bench: soak: ${flags.soakMinutes} min at ${SOAK_EVENTS_PER_SECOND / 1000}k events/s, agent RSS sampled every second`);
    const s = await soakRun({ root: ROOT, loadgen, cleanup, nsName, tmpDir }, flags.soakMinutes).catch((err: unknown) => failed('soak', err));
    if (s) {
      soaks.push(s);
      say(`bench: soak: ${soakGoal(soaks).measured}`);
    }
  }

  machine.loadAfter = loadAverage();
  const steps = plan.steps.map((s) => summarizeStep(s, trials));
  const report: Report = {
    machine,
    quick: plan.quick,
    reps: plan.reps,
    everyEventReps: plan.everyEventReps,
    warmup: plan.warmup,
    steps,
    ceilings,
    recorders,
    losses,
    stalled,
    soaks,
    goals: [...goals(steps, ceilings, losses, stalled), ...(soaks.length || flags.soakMinutes !== undefined ? [soakGoal(soaks)] : [])],
    hooks,
    blind,
    bpftrace: bpftraceInfo ?? '',
    seconds: (Date.now() - started) / 1000,
  };
  const markdown = renderMarkdown(report) + (failures.length ? `\n\n**Failed in this run:** ${failures.join('; ')}` : '');
  const json = {
    generatedAt: new Date().toISOString(),
    options: { quick: plan.quick, scenarios: flags.scenarios.length ? flags.scenarios : [...SCENARIOS], reps: plan.reps, arms },
    failures,
    ...report,
    trials: trials.map(compactTrial),
  };
  mkdirSync(OUT_DIR, { recursive: true });
  writeFileSync(join(OUT_DIR, 'results.json'), `${JSON.stringify(json, null, 2)}\n`);
  writeFileSync(join(OUT_DIR, 'results.md'), `${markdown}\n`);
  if (flags.jsonOnly) process.stdout.write(`${JSON.stringify(json)}\n`);
  else process.stdout.write(`\n${markdown}\n\nbench: wrote build/bench/results.json and build/bench/results.md\n`);
  if (failures.length) throw new BenchError(`${failures.length} part(s) of the run failed (${failures.join('; ')}); the rest is in build/bench/results.json.`);
}

async function entry(): Promise<number> {
  const cleanup = new Cleanup();
  let flags: Flags | 'help';
  try {
    flags = parseFlags(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`bench: ${(err as Error).message}\n`);
    return 1;
  }
  if (flags === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const say = flags.jsonOnly ? () => undefined : (line: string) => process.stderr.write(`${line}\n`);
  const onSignal = (signal: NodeJS.Signals) => {
    process.stderr.write(`bench: ${signal}: cleaning up namespaces, processes and mounts\n`);
    void cleanup.run().then(() => process.exit(signal === 'SIGINT' ? 130 : 143));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    await main(flags, cleanup, say);
    return 0;
  } catch (err) {
    if (err instanceof Interrupted || cleanup.stopping) return 130; // Ctrl-C: the handler says so and exits
    const msg = err instanceof BenchError ? err.message : `the benchmark failed: ${(err as Error).message ?? String(err)}`;
    process.stderr.write(`bench: ${msg}\n`);
    return 1;
  } finally {
    await cleanup.run();
  }
}

entry().then((code) => process.exit(code));
