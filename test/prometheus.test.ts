/**
 * A real Prometheus (Debian's 2.42) scrapes two agents, one per network
 * namespace, while each namespace gets real traffic: a listener that drops
 * at the ACK stage, one that drops SYNs, connects to a closed port,
 * client-closed connections. What
 * Prometheus stored must equal what each namespace's kernel counted (nstat),
 * and the shipped rules must fire on it.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { spawnCli } from './helpers/cli.js';
import { delta, describeKernel, ROOT, TestNetns } from './helpers/kernel.js';
import { prometheusMissing, startPrometheus, type PromAlert, type RunningPrometheus } from './helpers/prometheus.js';
import { until } from './helpers/until.js';

const RULES = join(ROOT, 'contrib/prometheus/wstrace.rules.yml');
const missing = prometheusMissing();

/** Namespace A gets a ten-port ephemeral range, so a few TIME_WAIT sockets fill most of it. */
const SMALL_RANGE = [40000, 40009] as const;
const TIMEWAITS = { a: 9, b: 4 };
const PORTS = { overflow: 7611, closed: 7612, timewait: 7613, full: 7614 };

/**
 * traffic.py's ack-overflow in two steps: the listener (backlog 2, deferred
 * accept) now, its clients (2 more handshakes than the queue holds, each then
 * sending data: ACK-stage drops) when overflow() is called.
 */
function ackOverflowListener(ns: TestNetns, port: number): { listening: Promise<void>; overflow(): Promise<unknown> } {
  const script = `
import json, socket, sys, time
sys.path.insert(0, ${JSON.stringify(join(ROOT, 'test/helpers'))})
import traffic
srv = traffic.listener(int(sys.argv[1]), 2, defer_accept=5)
print("listening", flush=True)
sys.stdin.readline()
clients = []
for _ in range(2):
    c = socket.create_connection((traffic.HOST, int(sys.argv[1])), timeout=5)
    c.send(b"x")
    clients.append(c)
time.sleep(0.1)
pending = [socket.create_connection((traffic.HOST, int(sys.argv[1])), timeout=5) for _ in range(2)]
for c in pending:
    c.send(b"x")
time.sleep(0.5)
for c in clients + pending:
    traffic.abort(c)
srv.close()
print(json.dumps({"connects": 4}), flush=True)
`;
  const child = spawn('ip', ['netns', 'exec', ns.name, 'python3', '-c', script, String(port)], { stdio: ['pipe', 'pipe', 'pipe'] });
  onTestFinished(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('close', resolve));
  const line = (pattern: RegExp) =>
    until(() => pattern.exec(out) ?? (child.exitCode !== null ? 'exited' : undefined), { what: `the ack-overflow listener to print ${pattern}` }).then(
      (m) => {
        if (m === 'exited') throw new Error(`the ack-overflow listener exited: ${err}`);
        return m;
      },
    );
  return {
    listening: line(/^listening$/m).then(() => undefined),
    async overflow() {
      child.stdin.end('go\n');
      const m = await line(/^(\{.*\})$/m);
      expect(await exited).toBe(0);
      return JSON.parse((m as RegExpExecArray)[1]!) as unknown;
    },
  };
}

function suite(): void {
  let dir: string;
  const ns: Record<'a' | 'b', TestNetns> = {} as Record<'a' | 'b', TestNetns>;
  let prom: RunningPrometheus | undefined;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'wst-promtest-'));
    ns.a = await TestNetns.create('wst-prom-a');
    ns.b = await TestNetns.create('wst-prom-b');
    await ns.a.exec('sysctl', ['-q', '-w', `net.ipv4.ip_local_port_range=${SMALL_RANGE[0]} ${SMALL_RANGE[1]}`]);
    // Loopback connects may take over a TIME_WAIT port (tcp_tw_reuse 2, the default): off, so each stays held.
    for (const n of [ns.a, ns.b]) await n.exec('sysctl', ['-q', '-w', 'net.ipv4.tcp_tw_reuse=0']);
  });
  afterAll(async () => {
    await prom?.stop();
    await ns.a?.destroy();
    await ns.b?.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  it("increase of listen drops, resets sent and TIME_WAIT in Prometheus equals each namespace's nstat; the shipped alerts fire", async () => {
    const agents = (['a', 'b'] as const).map((k) =>
      spawnCli(['agent', '--listen', `unix:${join(dir, `${k}.sock`)}`, '--netns', ns[k].name, '--metrics', '127.0.0.1:0'], { stdout: 'ignore' }),
    );
    const targets: string[] = [];
    for (const a of agents) targets.push(/metrics on http:\/\/(\S+)\/metrics\n/.exec(await a.waitStderr(/metrics on http:\/\/\S+\/metrics\n/))![1]!);
    const inst = { a: targets[0]!, b: targets[1]! };

    // The shipped rules, with every `for:` cut to 1s: the expressions are the real ones, only the waiting is shortened.
    const rules = join(dir, 'wstrace.rules.yml');
    writeFileSync(rules, readFileSync(RULES, 'utf8').replace(/^(\s+for:\s*)\S+$/gm, '$11s'));
    prom = await startPrometheus(targets, [rules]);
    const p = prom;
    await until(async () => (await p.targets()).filter((t) => t.health === 'up').length, {
      what: `Prometheus to scrape both agents (${p.log()})`,
      accept: (n) => n === 2,
      timeoutMs: 30_000,
    });

    /** The sum of `expr`'s series per agent at `time`; an agent with no series yet has counted nothing (0). */
    const perAgent = async (expr: string, time: number) => {
      const rows = await p.query(`sum by (instance) (${expr})`, time);
      const of = (i: string) => rows.find((r) => r.labels.instance === i)?.value ?? 0;
      return { a: of(inst.a), b: of(inst.b) };
    };
    /**
     * Waits until Prometheus holds a scrape of both agents that started after
     * now, and returns that instant: the value there was read after all that
     * came before.
     */
    const scrapedAfterNow = async () => {
      const t = Date.now() / 1000;
      const rows = await until(() => p.query('timestamp(wstrace_build_info)'), {
        what: 'a scrape of both agents after the traffic',
        accept: (r) => r.length === 2 && r.every((s) => s.value > t),
      });
      return Math.max(...rows.map((r) => r.value));
    };

    const SERIES = {
      // A namespace's ListenOverflows: both stages of its listeners, and its unattributed row's (stage unknown).
      listenDrops: 'wstrace_listen_drops_total{cause=~"ack_stage|syn_stage|unknown_stage"}',
      resetsSent: 'wstrace_resets_total{direction="sent"}',
      timewaitMade: 'wstrace_timewait_destination_created_total',
      timewaitTotal: 'wstrace_timewait_created_total',
    };
    const read = async (t: number) => ({
      listenDrops: await perAgent(SERIES.listenDrops, t),
      resetsSent: await perAgent(SERIES.resetsSent, t),
      timewaitMade: await perAgent(SERIES.timewaitMade, t),
      timewaitTotal: await perAgent(SERIES.timewaitTotal, t),
    });

    const k0 = { a: ns.a.nstat(), b: ns.b.nstat() };
    const t0 = await scrapedAfterNow();
    const v0 = await read(t0);

    // The listeners first, seen by a scrape with no drops yet: an alert's rate()
    // counts a series' increases, and a series born with its drops has none.
    const listeners = (['a', 'b'] as const).map((k) => ackOverflowListener(ns[k], PORTS.overflow));
    for (const l of listeners) await l.listening;
    await until(() => p.query(`wstrace_listen_drops_total{listener="127.0.0.1:${PORTS.overflow}",cause="ack_stage"} == 0`), {
      what: 'both new listeners scraped at zero drops',
      accept: (r) => r.length === 2,
    });
    for (const [i, k] of (['a', 'b'] as const).entries()) {
      // SYN-stage drops: a backlog-1 listener that never accepts, 8 connects.
      await ns[k].traffic('full-queue', PORTS.full, 1, 8, 0.5);
      expect(await listeners[i]!.overflow()).toEqual({ connects: 4 });
      await ns[k].traffic('closed-port', 3, PORTS.closed);
      await ns[k].traffic('timewait', TIMEWAITS[k], PORTS.timewait);
      await ns[k].packetOnEveryCpu(); // rises no packet was seen to make are set aside now, before the referee reads
    }
    const k1 = { a: ns.a.nstat(), b: ns.b.nstat() };
    const t1 = await scrapedAfterNow();
    const v1 = await read(t1);
    // Nothing moved after the traffic's end: the referee read and the scrape saw the same kernel.
    const k2 = { a: ns.a.nstat(), b: ns.b.nstat() };
    for (const k of ['a', 'b'] as const)
      for (const mib of ['TcpExtListenOverflows', 'TcpOutRsts', 'TcpExtTW']) expect(delta(k2[k], k1[k], mib), `${mib} in ${k} after the traffic`).toBe(0);

    // Raw counter values at two instants, subtracted: exact. increase(x[range])
    // is not: it extrapolates to the range's ends from the first and last
    // samples inside it, and a series born during the window (this listener's)
    // starts at its first sample, so what came before it is not an increase.
    for (const k of ['a', 'b'] as const) {
      const got = {
        listenDrops: v1.listenDrops[k] - v0.listenDrops[k],
        resetsSent: v1.resetsSent[k] - v0.resetsSent[k],
        timewaitMade: v1.timewaitMade[k] - v0.timewaitMade[k],
        timewaitTotal: v1.timewaitTotal[k] - v0.timewaitTotal[k],
      };
      const want = {
        listenDrops: delta(k1[k], k0[k], 'TcpExtListenOverflows'),
        resetsSent: delta(k1[k], k0[k], 'TcpOutRsts'),
        timewaitMade: delta(k1[k], k0[k], 'TcpExtTW'),
        timewaitTotal: delta(k1[k], k0[k], 'TcpExtTW'),
      };
      expect(got, `namespace ${k} (${inst[k]}): Prometheus vs nstat`).toEqual(want);
      expect(want.listenDrops).toBeGreaterThan(0);
      // Each listener's drops under its own cause: ACK stage for the deferred-accept one, SYN stage for the full one.
      const byCause = await p.query(`sum by (listener, cause) (wstrace_listen_drops_total{instance="${inst[k]}"}) > 0`, t1);
      expect(byCause.map((r) => `${r.labels.listener} ${r.labels.cause}`).sort()).toEqual([
        `127.0.0.1:${PORTS.overflow} ack_stage`,
        `127.0.0.1:${PORTS.full} syn_stage`,
      ]);
      // The full-queue client whose connection was queued may end in TIME_WAIT too, depending on who closes first.
      expect(want.timewaitMade).toBeGreaterThanOrEqual(TIMEWAITS[k]);
      expect(want.resetsSent).toBeGreaterThanOrEqual(3);
    }
    // Held now, per destination, as sockstat counts them; and as a share of each namespace's port range.
    const held = await perAgent('wstrace_timewait_destination_sockets', t1);
    expect(held).toEqual({ a: ns.a.sockstatTcp().tw, b: ns.b.sockstatTcp().tw });
    const share = await p.query(`wstrace_timewait_destination_port_usage_ratio{destination="127.0.0.1:${PORTS.timewait}"}`, t1);
    const shareOf = (i: string) => share.find((s) => s.labels.instance === i)?.value;
    expect(shareOf(inst.a)).toBeCloseTo(TIMEWAITS.a / (SMALL_RANGE[1] - SMALL_RANGE[0] + 1), 9);
    expect(shareOf(inst.b)).toBeLessThan(0.01);

    // The rules: both listeners dropping; TIME_WAIT over 80% of the range only in A.
    const overflowing = `127.0.0.1:${PORTS.overflow}`;
    const isDropping = (a: PromAlert, i: string) =>
      a.labels.alertname === 'WstraceListenerDropping' && a.labels.instance === i && a.labels.listener === overflowing;
    const firing = await until(async () => (await p.alerts()).filter((a) => a.state === 'firing'), {
      what: `WstraceListenerDropping for ${overflowing} in both namespaces and WstraceTimewaitPortRange for A to fire`,
      accept: (as) => [inst.a, inst.b].every((i) => as.some((a) => isDropping(a, i))) && as.some((a) => a.labels.alertname === 'WstraceTimewaitPortRange'),
      timeoutMs: 30_000,
    });
    const dropping = firing.find((a) => isDropping(a, inst.a))!;
    expect(dropping.annotations.runbook).toContain(`wstrace doctor --connect unix:/run/wstrace/agent.sock --port ${PORTS.overflow}`);
    const tw = firing.filter((a) => a.labels.alertname === 'WstraceTimewaitPortRange');
    expect(tw.map((a) => [a.labels.instance, a.labels.destination])).toEqual([[inst.a, `127.0.0.1:${PORTS.timewait}`]]);
    expect(firing.some((a) => a.labels.alertname === 'WstraceAgentDown')).toBe(false);

    // Stopped, the agents leave nothing; Prometheus then sees them down.
    for (const a of agents) a.child.kill('SIGTERM');
    for (const a of agents) expect(await a.closed).toBe(0);
    await until(async () => (await p.query('up{job="wstrace"} == 0')).length, { what: 'Prometheus to see both agents down', accept: (n) => n === 2 });
    // Two agents, a Prometheus and four kinds of traffic in two namespaces on two shared cores: more than the default minute.
  }, 180_000);
}

if (missing && process.env.WSTRACE_REQUIRE_KERNEL === '1') {
  describe('Prometheus', () => {
    it('runs', () => {
      throw new Error(`the Prometheus tests are required here but cannot run: ${missing}`);
    });
  });
} else if (missing) {
  describe.skip(`Prometheus [skipped: ${missing}]`, () => {
    it('needs Prometheus', () => undefined);
  });
} else {
  describeKernel('a real Prometheus scraping two agents (two namespaces)', suite);
}
