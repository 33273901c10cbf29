/**
 * `npm run test:kernels`: the kernel matrix. Runs test/kernels/probe.mjs on
 * this host and inside the newest Debian kernel of each series under qemu
 * (vm/), prints which exact kernels ran and which hook variant loads,
 * attaches and fires where, and fails when that differs from
 * test/kernels/expected.json in either direction: a variant that starts
 * working where it was expected not to is a change to make on purpose.
 * Expectations are per series ("6.1", "7.x"), not per package, so a kernel
 * update within a series needs no edit unless it changes behaviour.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { release } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { kernelIds, runInVm, type VmKernel } from '../../vm/run.js';

interface ProbeRow {
  kernel: string;
  signal: string;
  variant: string;
  loaded: boolean;
  attached: boolean;
  fired: boolean;
  exact?: boolean;
  synDrops?: number;
  listenOverflows?: number;
  /** Its events (and listener row) carried the cgroup the traffic ran in, and nothing from outside it came. */
  cgroup?: boolean;
  /** Runs per program of the variant (countHits). */
  hits?: Record<string, number>;
  error?: string;
}

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const EXPECTED_FILE = join(ROOT, 'test', 'kernels', 'expected.json');
const PROBE = ['node', 'test/kernels/probe.mjs'];

export function outcome(r: ProbeRow): string {
  if (r.fired && r.cgroup === false) return 'fires, WRONG cgroup';
  if (r.fired && r.exact === false) return 'fires, NOT exact';
  if (r.fired && r.exact) return 'fires, exact';
  if (r.fired) return 'fires';
  if (r.attached) return 'attaches, never fires';
  if (r.loaded) return 'attach fails';
  return 'load fails';
}

/**
 * What a row that differs measured, so a CI log alone says why: its error,
 * the programs the kernel never ran, and the counts the probe compared.
 */
function detail(r: ProbeRow): string {
  const parts: string[] = [];
  if (r.error) parts.push(r.error);
  const idle = Object.entries(r.hits ?? {}).filter(([, n]) => n === 0).map(([p]) => p);
  if (r.attached && r.hits) parts.push(idle.length ? `never ran: ${idle.join(', ')}` : 'every program ran');
  const counts = Object.entries(r).filter(([, v]) => typeof v === 'number');
  if (counts.length) parts.push(counts.map(([k, v]) => `${k} ${v}`).join(', '));
  return parts.length ? ` (${parts.join('; ')})` : '';
}

function parse(output: string): ProbeRow[] {
  return output
    .split('\n')
    .filter((l) => l.startsWith('WSTRACE_PROBE '))
    .map((l) => JSON.parse(l.slice('WSTRACE_PROBE '.length)) as ProbeRow);
}

async function main(): Promise<number> {
  const wanted = process.argv.slice(2);
  const expected = JSON.parse(readFileSync(EXPECTED_FILE, 'utf8')) as Record<string, Record<string, string>>;
  const results: Record<string, ProbeRow[]> = {};
  const booted: Record<string, VmKernel | undefined> = {};
  const columns = ['host', ...kernelIds()].filter((k) => wanted.length === 0 || wanted.includes(k));

  for (const k of columns) {
    const started = Date.now();
    let out: string;
    let code: number;
    if (k === 'host') {
      out = execFileSync(PROBE[0]!, PROBE.slice(1), { cwd: ROOT, encoding: 'utf8', timeout: 600_000 });
      code = 0;
    } else {
      ({ output: out, exitCode: code, kernel: booted[k] } = await runInVm(k, PROBE, { timeoutSec: 900 }));
    }
    results[k] = parse(out);
    process.stderr.write(`kernel ${k}: ${results[k]!.length} variants probed in ${((Date.now() - started) / 1000).toFixed(0)} s (exit ${code})\n`);
    if (results[k]!.length === 0) process.stderr.write(out.split('\n').slice(-30).join('\n') + '\n');
  }

  const keys = [...new Set(Object.values(results).flatMap((rows) => rows.map((r) => `${r.signal}/${r.variant}`)))];
  const mismatches: string[] = [];
  // `uname -r` as the guest reported it: that, not the cache, is what ran.
  const unameOf = (k: string) => (k === 'host' ? release() : (results[k]?.[0]?.kernel ?? booted[k]?.release ?? '?'));
  const ran = columns.map((k) => {
    const kernel = booted[k];
    if (k === 'host') return `- host: uname -r ${release()}`;
    if (!kernel) return `- ${k}: no kernel booted`;
    const [image, ...rest] = kernel.packages;
    const companions = rest.length ? ` (with ${rest.map((p) => p.name).join(', ')})` : '';
    if (results[k]?.length && unameOf(k) !== kernel.release) {
      mismatches.push(`${k}: ${image?.name} should report uname -r ${kernel.release}, the guest said ${unameOf(k)}`);
    }
    return `- ${k}: ${image?.name} ${image?.version}${companions}, uname -r ${unameOf(k)}`;
  });
  const header = `| signal / variant | ${columns.map((k) => (k === 'host' ? `host ${release()}` : `${k}: ${unameOf(k)}`)).join(' | ')} |`;
  const lines = [header, `|---|${columns.map(() => '---').join('|')}|`];
  for (const key of keys) {
    const cells = columns.map((k) => {
      const row = results[k]?.find((r) => `${r.signal}/${r.variant}` === key);
      const got = row ? outcome(row) : 'not probed';
      const want = expected[k]?.[key];
      if (want !== got) mismatches.push(`${k} (${unameOf(k)}) ${key}: expected "${want ?? '(nothing)'}", got "${got}"${row ? detail(row) : ''}`);
      return want === got ? got : `**${got}** (expected ${want ?? 'nothing'})`;
    });
    lines.push(`| ${key} | ${cells.join(' | ')} |`);
  }
  const table = `Kernels:\n\n${ran.join('\n')}\n\n${lines.join('\n')}`;
  process.stdout.write(`${table}\n`);
  mkdirSync(join(ROOT, 'build'), { recursive: true });
  writeFileSync(join(ROOT, 'build', 'kernel-matrix.md'), `${table}\n`);
  const record = Object.fromEntries(columns.map((k) => [k, { kernel: booted[k] ?? { release: unameOf(k) }, rows: results[k] ?? [] }]));
  writeFileSync(join(ROOT, 'build', 'kernel-matrix.json'), JSON.stringify(record, null, 2));
  // A series renamed or dropped from vm/kernels.json must not leave expectations nobody checks.
  const orphans = wanted.length ? [] : Object.keys(expected).filter((k) => !columns.includes(k));

  if (process.env.WSTRACE_MATRIX_UPDATE === '1') {
    for (const k of columns) {
      expected[k] = Object.fromEntries((results[k] ?? []).map((r) => [`${r.signal}/${r.variant}`, outcome(r)]));
    }
    for (const k of orphans) delete expected[k];
    writeFileSync(EXPECTED_FILE, `${JSON.stringify(expected, null, 2)}\n`);
    process.stderr.write(`updated ${EXPECTED_FILE}: review the diff before committing\n`);
    return 0;
  }
  const exactSomewhere = columns.some((k) => results[k]?.some((r) => r.signal === 'syn_drop' && r.exact));
  if (!exactSomewhere && columns.length > 1) mismatches.push('no kernel showed an exact per-listener SYN-stage drop count');
  // The socket's cgroup (and the --cgroup filter) is checked on every kernel, not only where some row happens to have events.
  for (const k of columns) {
    if (results[k]?.length && !results[k]!.some((r) => r.cgroup === true)) mismatches.push(`${k}: no event carried the cgroup its socket was made in`);
  }
  for (const k of orphans) mismatches.push(`${k}: expected results for a series vm/kernels.json does not list`);
  if (mismatches.length) {
    process.stderr.write(`kernel matrix differs from test/kernels/expected.json:\n  ${mismatches.join('\n  ')}\n`);
    process.stderr.write('(if the change is intended, rerun with WSTRACE_MATRIX_UPDATE=1 and commit the diff)\n');
    return 1;
  }
  process.stderr.write('kernel matrix matches test/kernels/expected.json\n');
  return 0;
}

main().then(
  (code) => (process.exitCode = code),
  (err: Error) => {
    process.stderr.write(`kernel matrix: ${err.message}\n`);
    process.exitCode = 1;
  },
);
