/**
 * Recordings: real traffic recorded in a test namespace agrees with the
 * kernel's counters; a recorder killed mid-stream leaves a readable file;
 * the reader survives damage; rotation keeps disk bounded.
 */
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { promisify } from 'node:util';
import { frame, parseRecording, PREAMBLE } from '../src/record/format.js';
import { CLI, spawnCli } from './helpers/cli.js';
import { delta, describeKernel, ROOT, TestNetns } from './helpers/kernel.js';
import { until } from './helpers/until.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Any = any;

function cli(args: string[]): string {
  return execFileSync(process.execPath, [CLI, ...args], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
}

async function startRecorder(args: string[]) {
  const rec = spawnCli(['record', ...args], { stdout: 'ignore' });
  await rec.waitStderr('recording into');
  return rec;
}

/** `wstrace report --json` of what the recorder has written so far (it writes whole records, so a live file reads). */
async function reportSoFar(file: string): Promise<Any> {
  const { stdout } = await promisify(execFile)(process.execPath, [CLI, 'report', file, '--json'], { cwd: ROOT, encoding: 'utf8' });
  return JSON.parse(stdout) as Any;
}

describeKernel('wstrace record / report / export', () => {
  let ns: TestNetns;
  let dir: string;
  beforeAll(async () => {
    ns = await TestNetns.create('wst-record');
    dir = mkdtempSync(join(tmpdir(), 'wst-record-'));
  });
  afterAll(async () => {
    await ns?.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  it("the report's totals equal the kernel's counters over the recording", async () => {
    const file = join(dir, 'a.wsr');
    const k0 = ns.nstat();
    // TIME_WAITs made, as the kernel counts them when each timewait socket's timer is armed (kernels since about
    // 5.18 do). Not sockstat's tw: a client's FIN_WAIT2 timewait socket that the listener's close then resets
    // (full-queue below) was made and is gone again.
    const twMade = () => {
      const k = ns.nstat();
      return delta(k, k0, 'TcpExtTW') + delta(k, k0, 'TcpExtTWKilled');
    };
    const rec = await startRecorder(['-o', file, '--netns', ns.path]);
    await ns.traffic('closed-port', 40, 7811);
    await ns.traffic('timewait', 6, 7812);
    await ns.traffic('full-queue', 7813, 1, 5, 0.5);
    const k1 = ns.nstat();
    // Stop once the file holds a snapshot taken after the last traffic (the recorder takes one a second).
    await until(() => reportSoFar(file), {
      what: `a snapshot in ${file} with the ${delta(k1, k0, 'TcpOutRsts')} resets and the TIME_WAITs the kernel counted`,
      accept: (r) =>
        r.totals.resetsSent === delta(k1, k0, 'TcpOutRsts') && r.totals.timewait === twMade() && r.listeners.some((l: Any) => l.listener === '127.0.0.1:7813'),
    });
    rec.child.kill('SIGINT');
    const code = await rec.closed;
    expect(code).toBe(0);
    const report = JSON.parse(cli(['report', file, '--json'])) as Any;
    expect(report.totals.resetsSent).toBe(delta(k1, k0, 'TcpOutRsts'));
    expect(report.mib.TcpOutRsts).toBe(delta(k1, k0, 'TcpOutRsts'));
    expect(report.totals.timewait).toBe(twMade());
    expect(report.totals.timewait).toBeGreaterThanOrEqual(6);
    expect(report.mib.TcpExtListenOverflows).toBe(delta(k1, k0, 'TcpExtListenOverflows'));
    expect(report.listeners.map((l: Any) => l.listener)).toContain('127.0.0.1:7813');
    expect(report.skipped).toBe(0);
    const text = cli(['report', file]);
    const sent = report.totals.resetsSent as number;
    expect(text).toMatch(new RegExp(`resets sent +${sent} +TcpOutRsts +${sent}\n`));
    expect(text).toMatch(/accept queue of 127\.0\.0\.1:7813 full \(peak 2 > limit 1/);
    const lines = cli(['export', file, '--ndjson']).trim().split('\n').map((l) => JSON.parse(l) as Any);
    expect(lines.filter((l) => l.kind === 'reset_sent' && l.lport === 7811)).toHaveLength(40);
    expect(lines.length).toBe(report.events);
  });

  it('kill -9 of the recorder leaves a file that reads up to the kill', async () => {
    const file = join(dir, 'killed.wsr');
    const rec = await startRecorder(['-o', file, '--netns', ns.path]);
    await ns.traffic('closed-port', 25, 7814);
    await until(() => reportSoFar(file), { what: `the 50 events in ${file}`, accept: (r) => r.events === 50 });
    rec.child.kill('SIGKILL');
    expect(await rec.closed).toBe('SIGKILL');
    const report = JSON.parse(cli(['report', file, '--json'])) as Any;
    expect(report.events).toBe(50); // 25 sent + 25 received
    expect(report.snapshots).toBeGreaterThan(0);
  });

  it('rotation keeps at most N older parts, each a readable recording', async () => {
    const file = join(dir, 'rot.wsr');
    // The smallest cap --max-size takes (1M); about 70 bytes a reset event. Bursts until a third part exists:
    // on a loaded machine the kernel ring drops some of a burst, and lost events take less room than events.
    const rec = await startRecorder(['-o', file, '--netns', ns.path, '--max-size', '1M', '--rotate', '2']);
    await until(
      async () => {
        if (!existsSync(`${file}.2`)) await ns.traffic('closed-port', 5000, 7815);
        return existsSync(`${file}.2`);
      },
      { what: `${file}.2, the second older part`, timeoutMs: 45_000 },
    );
    rec.child.kill('SIGINT');
    expect(await rec.closed).toBe(0);
    expect(existsSync(`${file}.1`)).toBe(true);
    expect(existsSync(`${file}.2`)).toBe(true);
    expect(existsSync(`${file}.3`)).toBe(false);
    for (const f of [file, `${file}.1`, `${file}.2`]) {
      const r = parseRecording(readFileSync(f));
      expect(r.entries[0]?.entry?.$case).toBe('header');
      expect(readFileSync(f).length).toBeLessThanOrEqual(1 << 20);
    }
  });

  it('a file that is not a recording gets one sentence and exit 1', () => {
    const bad = join(dir, 'bad.wsr');
    writeFileSync(bad, 'hello');
    let status = 0;
    let stderr = '';
    try {
      cli(['report', bad]);
    } catch (e) {
      status = (e as { status: number }).status;
      stderr = String((e as { stderr: string }).stderr);
    }
    expect(status).toBe(1);
    expect(stderr.trim()).toBe(`wstrace: ${bad} is not a wstrace recording (it does not start with "WSTRACE-RECORDING 1").`);
  });
});

describe('recording reader under damage (fuzz, no kernel)', () => {
  // A small valid recording, built with the real framing.
  const entries = Array.from({ length: 40 }, (_, i) =>
    frame({
      timeUnixMicros: 1_000_000 * i,
      entry: {
        $case: 'watch',
        value: { response: { $case: 'lost', value: { count: i, reason: 1 } } },
      },
    }),
  );
  const good = Buffer.concat([PREAMBLE, ...entries]);

  it('reads every record of an intact file', () => {
    expect(parseRecording(good)).toMatchObject({ skipped: 0, truncated: false });
    expect(parseRecording(good).entries).toHaveLength(40);
  });

  it('truncation at every byte: never throws, whole records only', () => {
    for (let cut = PREAMBLE.length; cut <= good.length; cut += 7) {
      const r = parseRecording(good.subarray(0, cut));
      expect(r.entries.length).toBeLessThanOrEqual(40);
      expect(r.skipped).toBe(0);
    }
  });

  it('flipped bits and random garbage: damaged records are skipped and counted, never a crash or a hang', () => {
    let seed = 42;
    const rand = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
    for (let round = 0; round < 300; round++) {
      const buf = Buffer.from(good);
      const flips = 1 + Math.floor(rand() * 8);
      for (let i = 0; i < flips; i++) {
        const at = PREAMBLE.length + Math.floor(rand() * (buf.length - PREAMBLE.length));
        buf[at] = buf[at]! ^ (1 << Math.floor(rand() * 8));
      }
      if (round % 3 === 0) {
        const at = PREAMBLE.length + Math.floor(rand() * (buf.length - PREAMBLE.length));
        Buffer.from(Array.from({ length: 50 }, () => Math.floor(rand() * 256))).copy(buf, at);
      }
      const started = Date.now();
      const r = parseRecording(buf);
      expect(Date.now() - started).toBeLessThan(1000);
      expect(r.entries.length + r.skipped).toBeGreaterThan(0);
      expect(r.entries.length).toBeLessThanOrEqual(40);
      if (r.entries.length < 40 && !r.truncated) expect(r.skipped).toBeGreaterThan(0);
    }
    expect(() => parseRecording(Buffer.from('garbage'))).toThrow(/is not a wstrace recording/);
  });
});
