/**
 * A real Prometheus server (Debian's, /usr/bin/prometheus) for the tests: on
 * 127.0.0.1, a free port, its own temporary storage, scraping the targets it
 * is given every second and evaluating the rule files given. stop() ends it
 * and removes its files whatever happened before.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { until } from './until.js';

export const PROMETHEUS = '/usr/bin/prometheus';
export const PROMTOOL = '/usr/bin/promtool';

/** Why the Prometheus tests cannot run here, or undefined when they can. */
export function prometheusMissing(): string | undefined {
  for (const bin of [PROMETHEUS, PROMTOOL]) if (!existsSync(bin)) return `${bin} is missing: run setup.sh (it installs Debian's prometheus package)`;
  return undefined;
}

/** Runs promtool with `input` on stdin; its exit status and everything it printed. */
export function promtool(args: string[], input?: string, cwd?: string): { status: number | null; output: string } {
  const r = spawnSync(PROMTOOL, args, { input, cwd, encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, output: `${r.stdout ?? ''}${r.stderr ?? ''}`.trim() };
}

export interface Sample {
  readonly labels: Record<string, string>;
  readonly value: number;
  /** Unix seconds. */
  readonly at: number;
}

export interface PromAlert {
  readonly labels: Record<string, string>;
  readonly annotations: Record<string, string>;
  readonly state: 'pending' | 'firing' | 'inactive';
}

export interface RunningPrometheus {
  readonly url: string;
  /** Instant query at `time` (Unix seconds; now when absent). */
  query(expr: string, time?: number): Promise<Sample[]>;
  targets(): Promise<Array<{ labels: Record<string, string>; health: string; lastError: string }>>;
  alerts(): Promise<PromAlert[]>;
  /** What the server logged, for failure messages. */
  log(): string;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((resolve, reject) => srv.once('error', reject).listen(0, '127.0.0.1', resolve));
  const port = (srv.address() as { port: number }).port;
  await new Promise((resolve) => srv.close(resolve));
  return port;
}

async function api<T>(base: string, path: string): Promise<T> {
  const res = await fetch(`${base}${path}`);
  const body = (await res.json()) as { status: string; data: T; error?: string };
  if (body.status !== 'success') throw new Error(`Prometheus ${path}: ${body.error ?? res.status}`);
  return body.data;
}

/**
 * Starts Prometheus scraping `targets` (host:port of /metrics) as job
 * "wstrace" every second, with `ruleFiles` evaluated every second.
 */
export async function startPrometheus(targets: string[], ruleFiles: string[]): Promise<RunningPrometheus> {
  const dir = mkdtempSync(join(tmpdir(), 'wst-prom-'));
  const config = {
    global: { scrape_interval: '1s', scrape_timeout: '1s', evaluation_interval: '1s' },
    rule_files: ruleFiles,
    scrape_configs: [{ job_name: 'wstrace', static_configs: [{ targets }] }],
  };
  // JSON is YAML: no YAML writer needed.
  writeFileSync(join(dir, 'prometheus.yml'), JSON.stringify(config, null, 2));
  let child: ChildProcess | undefined;
  let log = '';
  const stop = async () => {
    const c = child;
    child = undefined;
    if (c && c.exitCode === null && c.signalCode === null) {
      const gone = new Promise((resolve) => c.once('exit', resolve));
      c.kill('SIGTERM');
      const hard = setTimeout(() => c.kill('SIGKILL'), 10_000);
      await gone;
      clearTimeout(hard);
    }
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    // A port found free can be taken before Prometheus binds it: a few tries, each bounded.
    for (let attempt = 1; ; attempt++) {
      const port = await freePort();
      const url = `http://127.0.0.1:${port}`;
      const c = spawn(
        PROMETHEUS,
        [
          `--config.file=${join(dir, 'prometheus.yml')}`,
          `--storage.tsdb.path=${join(dir, 'data')}`,
          `--web.listen-address=127.0.0.1:${port}`,
          '--log.level=warn',
        ],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      child = c;
      c.stdout!.on('data', (d: Buffer) => (log += d.toString()));
      c.stderr!.on('data', (d: Buffer) => (log += d.toString()));
      const ready = await until(
        async () => {
          if (c.exitCode !== null || c.signalCode !== null) return 'exited';
          return (await fetch(`${url}/-/ready`)).ok ? 'ready' : undefined;
        },
        { what: `Prometheus on ${url} to be ready`, timeoutMs: 60_000, everyMs: 100 },
      );
      if (ready === 'ready') return handle(url);
      child = undefined;
      if (attempt >= 3) throw new Error(`Prometheus did not start: ${log.trim()}`);
    }
  } catch (err) {
    await stop();
    throw err;
  }

  function handle(url: string): RunningPrometheus {
    return {
      url,
      async query(expr, time) {
        const params = new URLSearchParams({ query: expr, ...(time !== undefined ? { time: String(time) } : {}) });
        const data = await api<{ resultType: string; result: Array<{ metric: Record<string, string>; value: [number, string] }> }>(
          url,
          `/api/v1/query?${params}`,
        );
        return data.result.map((r) => ({ labels: r.metric, at: r.value[0], value: Number(r.value[1]) }));
      },
      async targets() {
        const data = await api<{ activeTargets: Array<{ labels: Record<string, string>; health: string; lastError: string }> }>(url, '/api/v1/targets');
        return data.activeTargets;
      },
      async alerts() {
        return (await api<{ alerts: PromAlert[] }>(url, '/api/v1/alerts')).alerts;
      },
      log: () => log,
      stop,
    };
  }
}
