/**
 * `sudo npx tsx bench/tw-hits.ts [runs]`: does every hit of the
 * sock:inet_sock_set_state tracepoint reach wstrace's TIME_WAIT program?
 * The slow-accept load (the bench's step "slow accept, 20k/s") runs in a
 * fresh namespace with an in-process tracer, while an ftrace instance
 * records every hit of the tracepoint and kernel.bpf_stats_enabled counts
 * the program's runs. The ftrace window lies inside the window of the two
 * run-count readings (trace_marker lines), so background traffic can only
 * raise the program's count: hits − runs − recursion misses > 0 means hits
 * the kernel neither ran the program for nor counted as skipped. Prints one
 * row per run next to wstrace's TIME_WAIT count and the namespace's TcpExtTW,
 * and the context (task, CPU, softirq depth) of every TIME_WAIT the program
 * never saw.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { openTracer } from '../src/kernel/index.js';
import { enableBpfStats } from './bpfstats.js';
import { ensureTracefs } from './bpftrace.js';
import { Cleanup } from './cleanup.js';
import { buildLoadgen, loadArgs, type LoadSpec } from './loadgen.js';
import { BenchNetns, mibDelta } from './netns.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const INSTANCE = `/sys/kernel/tracing/instances/wstrace-tw-hits-${process.pid}`;
const LOAD: LoadSpec = { mode: 'slowaccept', rate: 20_000, seconds: 0.8, count: 16_000, flags: { L: 4, b: 8, a: 200, H: 100, p: 5000 } };
const TCP_FIN_WAIT2 = 'TCP_FIN_WAIT2';
const TCP_CLOSING = 'TCP_CLOSING';

/** Run counts and recursion misses of the process's BPF programs whose name starts with `name`, summed (the variant loaded). */
function progStats(name: string): { runs: number; misses: number } {
  let runs = 0;
  let misses = 0;
  let found = false;
  for (const fd of readdirSync(`/proc/${process.pid}/fdinfo`)) {
    let info: string;
    try {
      info = readFileSync(`/proc/${process.pid}/fdinfo/${fd}`, 'utf8');
    } catch {
      continue;
    }
    const id = /^prog_id:\s+(\d+)/m.exec(info)?.[1];
    if (!id || !/^run_cnt:/m.test(info)) continue;
    const shown = JSON.parse(execFileSync('bpftool', ['-j', 'prog', 'show', 'id', id], { encoding: 'utf8' })) as { name?: string };
    if (!shown.name?.startsWith(name)) continue;
    found = true;
    runs += Number(/^run_cnt:\s+(\d+)/m.exec(info)![1]);
    misses += Number(/^recursion_misses:\s+(\d+)/m.exec(info)?.[1] ?? 0);
  }
  if (!found) throw new Error(`no BPF program named ${name}… in this process`);
  return { runs, misses };
}

function hasProgram(name: string): boolean {
  try {
    progStats(name);
    return true;
  } catch {
    return false;
  }
}

const put = (file: string, text: string) => writeFileSync(join(INSTANCE, file), text);

async function oneRun(loadgen: string, cleanup: Cleanup, run: number): Promise<string[]> {
  const ns = await BenchNetns.create(`wsbtw${process.pid}-${run}`, cleanup);
  const tracer = await openTracer({ netns: ns.path, resolveOwners: false });
  try {
    // wst_timewait (raw_tp) or wst_timewait_btf: the variant the loader attached.
    const name = 'wst_timewait';
    const before = await ns.counts();
    put('trace', '');
    put('events/sock/inet_sock_set_state/enable', '1');
    const p0 = progStats(name);
    // Where a TIME_WAIT is counted only once its timewait socket was seen made (timer_init), that program's skipped runs matter too.
    const made0 = hasProgram('wst_tw_made') ? progStats('wst_tw_made') : undefined;
    put('trace_marker', 'wstrace-window-start\n');
    execFileSync('ip', ['netns', 'exec', ns.name, loadgen, ...loadArgs(LOAD)], { stdio: 'ignore', timeout: 60_000 });
    const after = await ns.quiet();
    put('trace_marker', 'wstrace-window-end\n');
    const p1 = progStats(name);
    const made1 = made0 ? progStats('wst_tw_made') : undefined;
    put('events/sock/inet_sock_set_state/enable', '0');
    const text = readFileSync(join(INSTANCE, 'trace'), 'utf8');
    const window = text.slice(text.indexOf('wstrace-window-start'), text.indexOf('wstrace-window-end'));
    const hits = window.split('\n').filter((l) => l.includes('inet_sock_set_state:'));
    const counted = tracer.counters().totals.timewait;
    const runs = p1.runs - p0.runs;
    const misses = p1.misses - p0.misses;
    const madeMisses = made0 && made1 ? String(made1.misses - made0.misses) : '—';
    const row = `| ${run} | ${counted} | ${mibDelta(before, after, 'TcpExtTW')} | ${hits.length} | ${runs} | ${misses} | ${hits.length - runs - misses} | ${madeMisses} |`;
    // Where the TIME_WAIT entries of the listener ports happened, for the runs that lost some.
    const lost = mibDelta(before, after, 'TcpExtTW') - counted;
    const where = lost
      ? hits
          .filter((l) => /sport=500[0-3] /.test(l) && l.includes('newstate=TCP_CLOSE') && (l.includes(TCP_FIN_WAIT2) || l.includes(TCP_CLOSING)))
          .map((l) => l.trim().split(/\s+/).slice(0, 3).join(' '))
      : [];
    return [row, ...(lost ? [`  run ${run}: ${lost} TIME_WAIT not counted; contexts of the listener-side closes (task, CPU, flags), most common: ${mostCommon(where)}`] : [])];
  } finally {
    tracer.close();
    await ns.destroy();
  }
}

function mostCommon(xs: string[]): string {
  const n = new Map<string, number>();
  for (const x of xs.map((s) => s.replace(/-\d+ /, ' '))) n.set(x, (n.get(x) ?? 0) + 1);
  return [...n].sort((a, b) => b[1] - a[1]).slice(0, 4).map(([k, v]) => `${k} ×${v}`).join(', ');
}

async function main(): Promise<void> {
  const runs = Number(process.argv[2] ?? 10);
  const cleanup = new Cleanup();
  try {
    await ensureTracefs(cleanup);
    if (!enableBpfStats(cleanup)) throw new Error('cannot turn on kernel.bpf_stats_enabled');
    mkdirSync(INSTANCE);
    cleanup.add('ftrace instance', () => rmdirSync(INSTANCE));
    put('buffer_size_kb', '16384');
    const loadgen = buildLoadgen(ROOT);
    const out = ['| run | wstrace TIME_WAIT | TcpExtTW | ftrace hits | program runs | recursion misses | hits neither run nor counted | timer_init program: recursion misses |', '| --- | --- | --- | --- | --- | --- | --- | --- |'];
    for (let i = 1; i <= Math.min(Math.max(1, runs), 100); i++) out.push(...(await oneRun(loadgen, cleanup, i)));
    process.stdout.write(`${out.join('\n')}\n`);
  } finally {
    await cleanup.run();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`tw-hits: ${(err as Error).message}\n`);
  process.exit(1);
});
