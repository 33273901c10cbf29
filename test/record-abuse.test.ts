/**
 * Recordings under abuse: files larger than memory or than 2 GiB, records
 * whose checksum is right and whose payload is garbage, a damaged header,
 * a size cap smaller than a header, a disk that fills while recording.
 * Real files, the real command; the last test records real traffic.
 */
import { execFile } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { crc32 } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import type { RecordEntry } from '../src/generated/wstrace/v1/record.js';
import { EventKind, GetInfoResponse, SnapshotResponse, Totals, type Event } from '../src/generated/wstrace/v1/tracer.js';
import { frame, parseRecording, PREAMBLE } from '../src/record/format.js';
import { indexRecording } from '../src/record/recording-index.js';
import { ReplaySource } from '../src/record/replay.js';
import { DEFAULT_OLDER_PARTS, DEFAULT_PART_BYTES, RecordingWriter } from '../src/record/writer.js';
import { spawnCli } from './helpers/cli.js';
import { describeKernel, ROOT, TestNetns } from './helpers/kernel.js';
import { until } from './helpers/until.js';

const run = promisify(execFile);
const CLI = join(ROOT, 'bin/wstrace.js');
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Any = any;

/** Prints the process's peak RSS (VmHWM, kB) on stderr as it exits: the real command, measured from inside. */
const PEAK_RSS = `data:text/javascript,${encodeURIComponent(
  "import{readFileSync}from'node:fs';process.on('exit',()=>process.stderr.write('\\nVmHWM '+/VmHWM:\\s*(\\d+)/.exec(readFileSync('/proc/self/status','utf8'))[1]+'\\n'))",
)}`;

async function wstrace(args: string[], opts: { peakRss?: boolean } = {}) {
  const argv = [...(opts.peakRss ? ['--import', PEAK_RSS] : []), CLI, ...args];
  try {
    const { stdout, stderr } = await run(process.execPath, argv, { cwd: ROOT, maxBuffer: 64 << 20, timeout: 180_000 });
    return { code: 0, stdout, stderr, peakKb: Number(/VmHWM (\d+)/.exec(stderr)?.[1] ?? NaN) };
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string };
    return { code: x.code, stdout: x.stdout, stderr: x.stderr, peakKb: NaN };
  }
}

const empty = <T>(m: { decode(b: Uint8Array): T }): T => m.decode(new Uint8Array(0));
const T0 = 1_700_000_000_000_000; // µs
const at = (sec: number) => T0 + sec * 1_000_000;
const PEERS = ['10.0.0.1', '10.0.0.2', '10.0.0.3', '10.0.0.4'];
const PER_BATCH = 64;

const header = (): RecordEntry => ({
  timeUnixMicros: at(0),
  entry: {
    $case: 'header',
    value: { version: 'test', info: { ...empty(GetInfoResponse), hostname: 'abuse-host', kernel: '6.1.0-test' }, ports: [], kinds: [], netns: '', part: 0 },
  },
});
const snapshot = (sec: number, resetsSent: number): RecordEntry => ({
  timeUnixMicros: at(sec),
  entry: { $case: 'snapshot', value: { ...empty(SnapshotResponse), timeUnixMicros: at(sec), totals: { ...empty(Totals), resetsSent } } },
});
/** 64 resets sent, 16 to each of four peers. */
const batch = (sec: number): RecordEntry => {
  const events: Event[] = Array.from({ length: PER_BATCH }, (_, k) => ({
    timeUnixMicros: at(sec),
    kind: EventKind.EVENT_KIND_RESET_SENT,
    family: 1,
    localAddr: '127.0.0.1',
    localPort: 8080,
    remoteAddr: PEERS[k % PEERS.length]!,
    remotePort: 40000,
    netns: 4026531840,
    state: '',
    reason: 'NOT_SPECIFIED',
    comm: '',
  }));
  return { timeUnixMicros: at(sec) + 1, entry: { $case: 'watch', value: { response: { $case: 'batch', value: { events } } } } };
};

/** A recording of `seconds` seconds, `perSecond` batch records each, written as fast as the disk takes it. */
function writeSynthetic(path: string, seconds: number, perSecond: number): { events: number } {
  const fd = openSync(path, 'w');
  writeSync(fd, Buffer.concat([PREAMBLE, frame(header()), frame(snapshot(0, 0))]));
  for (let s = 1; s <= seconds; s++) {
    writeSync(fd, Buffer.concat([...Array<Buffer>(perSecond).fill(frame(batch(s))), frame(snapshot(s, s * perSecond * PER_BATCH))]));
  }
  closeSync(fd);
  return { events: seconds * perSecond * PER_BATCH };
}

/** What a report of such a recording must say, whatever its size. */
function expectReportOf(report: Any, seconds: number, events: number): void {
  expect(report.host).toBe('abuse-host');
  expect(report.events).toBe(events);
  expect(report.snapshots).toBe(seconds + 1);
  expect(report.timeline).toHaveLength(seconds);
  expect(report.totals.resetsSent).toBe(events);
  expect(report.resetReasons).toEqual([{ reason: 'sent NOT_SPECIFIED', count: events }]);
  expect(report.resetPeers).toEqual(PEERS.map((p) => ({ peer: `${p}:40000`, count: events / PEERS.length })));
  expect(report).toMatchObject({ skipped: 0, damagedBytes: 0, truncated: false, headerLost: false });
}

/** A frame whose checksum is right for whatever payload it carries. */
function rawFrame(payload: Buffer): Buffer {
  const head = Buffer.alloc(12);
  head.write('WSRC', 0);
  head.writeUInt32LE(payload.length, 4);
  head.writeUInt32LE(crc32(payload), 8);
  return Buffer.concat([head, payload]);
}

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'wst-abuse-'));
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('reading recordings larger than memory', () => {
  it('report streams a 300 MB recording in bounded memory and gives the numbers it gives for a small one', async () => {
    const small = join(dir, 'small.wsr');
    const smallRec = writeSynthetic(small, 3, 4);
    const s = await wstrace(['report', small, '--json']);
    expect(s.stderr).not.toMatch(/wstrace:/);
    expectReportOf(JSON.parse(s.stdout), 3, smallRec.events);

    const big = join(dir, 'big.wsr');
    const bigRec = writeSynthetic(big, 300, 256); // about 1 MiB a second
    expect(statSync(big).size).toBeGreaterThan(300e6);
    const b = await wstrace(['report', big, '--json'], { peakRss: true });
    expect(b.code, b.stderr).toBe(0);
    expectReportOf(JSON.parse(b.stdout), 300, bigRec.events);
    // Loading the file whole takes 300 MB before a single record is decoded.
    expect(b.peakKb).toBeLessThan(200 * 1024);
    rmSync(big);
  }, 240_000);

  it('a 2.1 GiB file with a hole of zeros reads: both ends are read and the hole is one damaged record', async () => {
    const file = join(dir, 'sparse.wsr');
    const start = Buffer.concat([PREAMBLE, frame(header()), frame(snapshot(0, 0)), frame(batch(1)), frame(batch(1)), frame(snapshot(1, 128))]);
    writeFileSync(file, start);
    const holeEnd = Math.floor(2.1 * 2 ** 30);
    truncateSync(file, holeEnd); // sparse: no disk used for the zeros
    const end = Buffer.concat([frame(batch(2)), frame(batch(2)), frame(snapshot(2, 256))]);
    const fd = openSync(file, 'r+');
    writeSync(fd, end, 0, end.length, holeEnd);
    closeSync(fd);

    const started = Date.now();
    const r = await wstrace(['report', file, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout) as Any;
    expect(report).toMatchObject({ events: 4 * PER_BATCH, snapshots: 3, skipped: 1, damagedBytes: holeEnd - start.length, truncated: false });
    expect(report.totals.resetsSent).toBe(256);
    expect(Date.now() - started).toBeLessThan(60_000);

    const x = await wstrace(['export', file]);
    expect(x.code, x.stderr).toBe(0);
    expect(x.stdout.trim().split('\n')).toHaveLength(4 * PER_BATCH);
    expect(x.stderr).toContain(`${file}: 1 damaged record (${holeEnd - start.length} bytes) skipped; everything else was read.`);

    // Replay reads it the same way: the whole span, the last snapshot at the end.
    const source = new ReplaySource(await indexRecording(file));
    try {
      expect([source.clock.startMs, source.clock.endMs]).toEqual([at(0) / 1000, at(2) / 1000 + 0.001]);
      source.clock.jump(at(2) / 1000, true);
      expect((await source.snapshot()).totals?.resetsSent).toBe(256);
    } finally {
      source.close();
    }
    rmSync(file);
  }, 120_000);
});

describe('replay reads back only what its clock reaches', () => {
  it('the stream gives each second its batches as the clock passes it, and again after a jump back', async () => {
    const file = join(dir, 'play.wsr');
    writeSynthetic(file, 3, 4);
    let realNow = 0;
    const source = new ReplaySource(await indexRecording(file), 1, () => realNow);
    const stream = source.watch({});
    const messages = stream[Symbol.asyncIterator]();
    const next = async () => {
      const m = (await messages.next()).value as Any;
      return m.response.$case === 'batch' ? `batch of ${m.response.value.events.length} from second ${(m.response.value.events[0].timeUnixMicros - T0) / 1e6}` : m.response.$case;
    };
    try {
      expect(await next()).toBe('status');
      const pending = next(); // the stream takes the clock as it opens: what is before is the past
      realNow += 1500; // into second 1
      const first = [await pending, await next(), await next(), await next()];
      expect(first).toEqual(Array(4).fill('batch of 64 from second 1'));
      realNow += 1000; // into second 2
      expect(await next()).toBe('batch of 64 from second 2');
      for (let i = 0; i < 3; i++) await next();
      source.clock.jump(at(1) / 1000, true); // back to the start of second 1, paused
      source.clock.togglePause();
      realNow += 500;
      expect(await next()).toBe('batch of 64 from second 1');
      source.clock.jump(at(2) / 1000 + 1, true);
      expect((await source.snapshot()).totals?.resetsSent).toBe(2 * 4 * PER_BATCH);
    } finally {
      stream.cancel();
      source.close();
    }
  });
});

describe('damaged records and headers: report, export and replay read what can be read and say what could not', () => {
  it('a record with a good checksum and a garbage payload is counted as damaged, never taken', async () => {
    const nothing = rawFrame(Buffer.from('hello world garbage')); // decodes to an entry with nothing in it
    const broken = rawFrame(Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff])); // does not decode
    const buf = Buffer.concat([PREAMBLE, frame(header()), frame(snapshot(0, 0)), nothing, frame(batch(1)), broken, frame(snapshot(1, 64))]);
    const parsed = parseRecording(buf);
    expect(parsed.entries.map((e) => e.entry?.$case)).toEqual(['header', 'snapshot', 'watch', 'snapshot']);
    expect(parsed).toMatchObject({ skipped: 2, damagedBytes: nothing.length + broken.length, truncated: false });

    const file = join(dir, 'garbage.wsr');
    writeFileSync(file, buf);
    const r = await wstrace(['report', file, '--json']);
    expect(JSON.parse(r.stdout)).toMatchObject({ events: PER_BATCH, skipped: 2, snapshots: 2 });
    const text = await wstrace(['report', file]);
    expect(text.stdout).toContain(`${PER_BATCH} events, 2 snapshots, 2 damaged records skipped (${nothing.length + broken.length} bytes)`);
  });

  it('a damaged header: all three read the rest, and say the host is unknown', async () => {
    const head = frame(header());
    head[head.length - 3]! ^= 0xff; // the checksum no longer agrees
    const file = join(dir, 'headless.wsr');
    writeFileSync(file, Buffer.concat([PREAMBLE, head, frame(snapshot(0, 0)), frame(batch(1)), frame(snapshot(1, 64))]));

    const r = await wstrace(['report', file, '--json']);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ events: PER_BATCH, snapshots: 2, skipped: 1, damagedBytes: head.length, headerLost: true });
    expect((await wstrace(['report', file])).stdout).toContain('note: the recording header is damaged');

    const x = await wstrace(['export', file]);
    expect(x.code).toBe(0);
    expect(x.stdout.trim().split('\n')).toHaveLength(PER_BATCH);
    expect(x.stderr).toContain('its header is lost, so host and kernel are unknown');

    const source = new ReplaySource(await indexRecording(file));
    try {
      expect((await source.info()).hostname).toBe('unknown (recording header damaged)');
      source.clock.jump(at(1) / 1000 + 1, true);
      expect((await source.snapshot()).totals?.resetsSent).toBe(64);
      const seen: number[] = [];
      source.prime(source.clock.now(), 65_000, { watch: (m) => seen.push(m.response?.$case === 'batch' ? m.response.value.events.length : 0), snapshot: () => {} });
      expect(seen).toEqual([PER_BATCH]);
    } finally {
      source.close();
    }
  });

  it('replay refuses, in one sentence, only a recording with nothing readable in it', async () => {
    const file = join(dir, 'nothing.wsr');
    writeFileSync(file, Buffer.concat([PREAMBLE, Buffer.alloc(5000, 0x55)]));
    const index = await indexRecording(file);
    expect(() => new ReplaySource(index)).toThrow('the recording holds no readable record: it is empty, or damaged throughout.');
    index.close();
  });
});

describe('RecordingWriter: a cap is a cap', () => {
  const start = () => [header(), snapshot(0, 0)];
  const startBytes = PREAMBLE.length + frame(header()).length + frame(snapshot(0, 0)).length;

  it('refuses a cap that cannot hold the header and snapshot, naming the smallest it takes, and writes nothing', () => {
    const file = join(dir, 'tiny.wsr');
    expect(() => new RecordingWriter(file, { maxSize: 10, startOfPart: start })).toThrow(
      `a part of 10 bytes cannot hold the recording's header and first snapshot (${startBytes} bytes); give --max-size at least 1048576.`,
    );
    expect(existsSync(file)).toBe(false);
  });

  it('without rotation it stops at the cap: never a byte over, whole records only', () => {
    const file = join(dir, 'capped.wsr');
    const w = new RecordingWriter(file, { maxSize: 65_536, rotate: 0, startOfPart: start });
    let written = 0;
    while (w.write(batch(1))) written++;
    w.close();
    expect(w.failure).toBeUndefined();
    expect(statSync(file).size).toBeLessThanOrEqual(65_536);
    expect(statSync(file).size + frame(batch(1)).length).toBeGreaterThan(65_536);
    const r = parseRecording(readFileSync(file));
    expect(r).toMatchObject({ skipped: 0, truncated: false });
    expect(r.entries).toHaveLength(2 + written);
  });

  it('with rotation every part is under the cap and starts with its header and a snapshot; N older parts are kept', () => {
    const sub = join(dir, 'rot');
    mkdirSync(sub);
    const file = join(sub, 'r.wsr');
    const w = new RecordingWriter(file, { maxSize: 65_536, rotate: 2, startOfPart: start });
    for (let i = 0; i < 100; i++) expect(w.write(batch(1))).toBe(true);
    w.close();
    expect(readdirSync(sub).sort()).toEqual(['r.wsr', 'r.wsr.1', 'r.wsr.2']);
    for (const f of readdirSync(sub)) {
      expect(statSync(join(sub, f)).size).toBeLessThanOrEqual(65_536);
      const r = parseRecording(readFileSync(join(sub, f)));
      expect(r.entries.slice(0, 2).map((e) => e.entry?.$case)).toEqual(['header', 'snapshot']);
      expect(r.skipped).toBe(0);
    }
  });

  it(`by default it rotates at ${DEFAULT_PART_BYTES} bytes and keeps ${DEFAULT_OLDER_PARTS} older parts`, () => {
    expect([DEFAULT_PART_BYTES, DEFAULT_OLDER_PARTS]).toEqual([100 * 2 ** 20, 9]);
    const file = join(dir, 'default.wsr');
    const w = new RecordingWriter(file, { startOfPart: start });
    const one = frame(batch(1)).length;
    for (let n = 0; w.partNumber === 0; n++) {
      expect(n).toBeLessThan((200 * 2 ** 20) / one); // a writer with no cap would fill the disk
      expect(w.write(batch(1))).toBe(true);
    }
    w.close();
    const first = statSync(`${file}.1`).size;
    expect(first).toBeLessThanOrEqual(DEFAULT_PART_BYTES);
    expect(first + one).toBeGreaterThan(DEFAULT_PART_BYTES);
    rmSync(`${file}.1`);
  });
});

describeKernel('a disk that fills while recording', () => {
  let mnt: string;
  let ns: TestNetns;
  beforeAll(async () => {
    mnt = join(dir, 'full');
    mkdirSync(mnt);
    await run('mount', ['-t', 'tmpfs', '-o', 'size=128k', 'tmpfs', mnt]);
    ns = await TestNetns.create('wst-abuse');
  });
  afterAll(async () => {
    await ns?.destroy();
    if (mnt) await run('umount', [mnt]).catch(() => undefined);
  });

  it('the writer stops on ENOSPC, keeps whole records, and says what it kept', async () => {
    const file = join(mnt, 'w.wsr');
    onTestFinished(() => rmSync(file, { force: true })); // the next test needs the space
    const w = new RecordingWriter(file, { startOfPart: () => [header(), snapshot(0, 0)] });
    let n = 0;
    while (w.write(batch(1))) expect(++n).toBeLessThan(1000);
    const err = await w.failed;
    expect(w.stopped).toBe(true);
    const m = /^writing (.+) failed \(ENOSPC\); recording stopped, keeping (.+) \((\d+) bytes, (\d+) records\)\.$/.exec(err.message);
    expect(m, err.message).not.toBeNull();
    expect([m![1], m![2]]).toEqual([file, file]);
    expect(statSync(file).size).toBe(Number(m![3]));
    const r = parseRecording(readFileSync(file));
    expect(r).toMatchObject({ skipped: 0, truncated: false });
    expect(r.entries).toHaveLength(Number(m![4]));
    expect(r.entries).toHaveLength(2 + n);
  });

  it('`wstrace record` on a disk that fills exits 1 with one sentence saying what it kept, instead of hanging', async () => {
    const file = join(mnt, 'r.wsr');
    const rec = spawnCli(['record', '-o', file, '--netns', ns.path]);
    await rec.waitStderr('recording into');
    // Resets until the 128 KiB disk is full; the recorder must then end on its own.
    await until(async () => rec.exitStatus() !== undefined || (await ns.traffic('closed-port', 300, 7871), false), {
      what: 'the recorder to exit once the disk is full',
      timeoutMs: 60_000,
      everyMs: 10,
    });
    expect(await rec.closed).toBe(1);
    const last = rec.stderr().trim().split('\n').at(-1)!;
    expect(last).toMatch(new RegExp(`^wstrace: writing ${file} failed \\(ENOSPC\\); recording stopped, keeping ${file} \\(\\d+ bytes, \\d+ records\\)\\.$`));
    const kept = Number(/\((\d+) bytes/.exec(last)![1]);
    expect(statSync(file).size).toBe(kept);
    const report = JSON.parse((await wstrace(['report', file, '--json'])).stdout) as Any;
    expect(report).toMatchObject({ skipped: 0, truncated: false, headerLost: false });
    expect(report.events).toBeGreaterThan(0);
  }, 90_000);
});
