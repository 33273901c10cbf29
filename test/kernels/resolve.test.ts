// vm/resolve.mjs against made-up `apt-cache madison` output: no network, no root.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { compareVersions, parseMadison, resolveSeries, type KernelSeries } from '../../vm/resolve.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const SERIES = JSON.parse(readFileSync(join(ROOT, 'vm', 'kernels.json'), 'utf8')) as Record<string, KernelSeries>;

const DEB = 'http://deb.debian.org/debian';
const SEC = 'http://deb.debian.org/debian-security';
const row = (name: string, version: string, uri: string, suite: string) =>
  `${name} | ${version} | ${uri} ${suite}/main amd64 Packages`;

/** Realistic neighbours of the wanted image: other flavours, suites, series and decoys that sort wrongly as text. */
const INDEX = [
  row('linux-image-6.1.0-9-amd64', '6.1.27-1', DEB, 'bookworm'),
  row('linux-image-6.1.0-10-amd64', '6.1.38-1', SEC, 'bookworm-security'),
  row('linux-image-6.1.0-56-amd64', '6.1.192-2', SEC, 'bookworm-security'),
  row('linux-image-6.1.0-57-amd64', '6.1.192-3', SEC, 'bookworm-security'),
  // Newer, but not the generic flavour or not a kernel image at all.
  row('linux-image-6.1.0-58-cloud-amd64', '6.1.193-1', SEC, 'bookworm-security'),
  row('linux-image-6.1.0-58-rt-amd64', '6.1.193-1', SEC, 'bookworm-security'),
  row('linux-image-6.1.0-58-amd64-dbg', '6.1.193-1', SEC, 'bookworm-security'),
  row('linux-image-6.1.0-58-amd64-unsigned', '6.1.193-1', SEC, 'bookworm-security'),
  row('linux-image-amd64', '6.1.193-1', SEC, 'bookworm-security'),
  // The 6.1 of bullseye-backports: same upstream, wrong suite and name.
  row('linux-image-6.1.0-0.deb11.52-amd64', '6.1.200-1~deb11u1', SEC, 'bullseye-security'),
  row('linux-image-6.12.117+deb12-amd64', '6.12.117-1~deb12u1', SEC, 'bookworm-security'),
  row('linux-image-6.12.95+deb12-amd64', '6.12.95-1~bpo12+1', DEB, 'bookworm-backports'),
  row('linux-image-6.12.118+deb13-amd64', '6.12.118-1', SEC, 'trixie-security'),
  // 7.x: the image is a small package; vmlinuz and modules come in companions of its ABI.
  row('linux-image-7.3.4+deb13-amd64', '7.3.4-1~bpo13+1', DEB, 'trixie-backports'),
  row('linux-binary-7.3.4+deb13-amd64', '7.3.4-1~bpo13+1', DEB, 'trixie-backports'),
  row('linux-modules-7.3.4+deb13-amd64', '7.3.4-1~bpo13+1', DEB, 'trixie-backports'),
  row('linux-image-7.3.10+deb13-amd64', '7.3.10-1~bpo13+1', DEB, 'trixie-backports'),
  row('linux-binary-7.3.10+deb13-amd64', '7.3.10-1~bpo13+1', DEB, 'trixie-backports'),
  row('linux-binary-7.3.10+deb13-cloud-amd64', '7.3.10-1~bpo13+1', DEB, 'trixie-backports'),
  row('linux-modules-7.3.10+deb13-amd64', '7.3.10-1~bpo13+1', DEB, 'trixie-backports'),
  row('linux-modules-7.3.10+deb13-cloud-amd64', '7.3.10-1~bpo13+1', DEB, 'trixie-backports'),
  row('linux-image-7.3.10+deb13-cloud-amd64', '7.3.10-1~bpo13+1', DEB, 'trixie-backports'),
  row('linux-image-7.3.10+deb13-amd64-dbg', '7.3.10-1~bpo13+1', DEB, 'trixie-backports'),
].join('\n');

const picked = (id: string, index = INDEX) =>
  resolveSeries(id, SERIES[id]!, index).packages.map((p) => `${p.name}=${p.version}`);

describe('vm/resolve.mjs', () => {
  it('orders versions as dpkg --compare-versions does', () => {
    const sorted = ['6.1.192-3', '6.1.38-1', '7.3.4-1~bpo13+1', '7.3.4-1', '1:0.1', '6.1.192-2', '7.3.10-1~bpo13+1', '6.1.192'];
    expect(sorted.sort(compareVersions)).toEqual([
      '6.1.38-1',
      '6.1.192',
      '6.1.192-2',
      '6.1.192-3',
      '7.3.4-1~bpo13+1',
      '7.3.4-1',
      '7.3.10-1~bpo13+1',
      '1:0.1',
    ]);
  });

  it('reads suites from madison lines and skips anything else', () => {
    const rows = parseMadison(`${INDEX}\n   linux | 6.1.192-3 | ${SEC} bookworm-security/main Sources\nE: nothing`);
    expect(rows).toHaveLength(INDEX.split('\n').length);
    expect(rows[1]).toEqual({ name: 'linux-image-6.1.0-10-amd64', version: '6.1.38-1', suite: 'bookworm-security' });
  });

  it('picks the newest generic image of the series, not a -cloud, -rt, -dbg or -unsigned one', () => {
    expect(picked('6.1')).toEqual(['linux-image-6.1.0-57-amd64=6.1.192-3']);
    expect(picked('6.12')).toEqual(['linux-image-6.12.117+deb12-amd64=6.12.117-1~deb12u1']);
  });

  it('keeps to the series suites', () => {
    const only = INDEX.split('\n').filter((l) => !l.includes('bookworm-security')).join('\n');
    expect(picked('6.1', only)).toEqual(['linux-image-6.1.0-9-amd64=6.1.27-1']);
    expect(picked('6.12', only)).toEqual(['linux-image-6.12.95+deb12-amd64=6.12.95-1~bpo12+1']);
  });

  it('adds the 7.x binary and modules packages of the same ABI and version', () => {
    expect(picked('7.x')).toEqual([
      'linux-image-7.3.10+deb13-amd64=7.3.10-1~bpo13+1',
      'linux-binary-7.3.10+deb13-amd64=7.3.10-1~bpo13+1',
      'linux-modules-7.3.10+deb13-amd64=7.3.10-1~bpo13+1',
    ]);
  });

  it('follows trixie-backports to the next minor without an edit', () => {
    const v = '7.4.1-1~bpo13+1';
    const moved = ['image', 'binary', 'modules'].map((p) => row(`linux-${p}-7.4.1+deb13-amd64`, v, DEB, 'trixie-backports'));
    expect(picked('7.x', moved.join('\n'))[0]).toBe(`linux-image-7.4.1+deb13-amd64=${v}`);
  });

  it('passes over an image whose companions the mirror does not have yet', () => {
    const half = INDEX.split('\n').filter((l) => !l.startsWith('linux-modules-7.3.10+deb13-amd64 ')).join('\n');
    const r = resolveSeries('7.x', SERIES['7.x']!, half);
    expect(r.packages.map((p) => p.name)).toEqual([
      'linux-image-7.3.4+deb13-amd64',
      'linux-binary-7.3.4+deb13-amd64',
      'linux-modules-7.3.4+deb13-amd64',
    ]);
    expect(r.skipped).toEqual(['linux-image-7.3.10+deb13-amd64 7.3.10-1~bpo13+1 (no linux-modules-7.3.10+deb13-amd64 7.3.10-1~bpo13+1)']);
    const none = half.split('\n').filter((l) => !l.startsWith('linux-modules-')).join('\n');
    expect(() => resolveSeries('7.x', SERIES['7.x']!, none)).toThrow(
      /^kernel series 7\.x: trixie-backports has linux-image-7\.3\.10\+deb13-amd64 7\.3\.10-1~bpo13\+1 but not linux-modules-7\.3\.10\+deb13-amd64 7\.3\.10-1~bpo13\+1, and no older image there is complete either$/,
    );
  });

  it('says in one sentence when the series is absent from the index', () => {
    expect(() => resolveSeries('5.10', SERIES['5.10']!, INDEX)).toThrow(
      'kernel series 5.10: no package in bullseye, bullseye-security matches linux-image-5\\.10\\.0-[0-9]+-amd64',
    );
    expect(() => resolveSeries('6.1', SERIES['6.1']!, '')).toThrow(/^kernel series 6\.1: no package in bookworm, bookworm-security matches /);
  });

  it('is what vm/fetch.sh runs: name=version suite lines, or one sentence and exit 1', () => {
    const cli = (id: string, input: string) =>
      execFileSync('node', [join(ROOT, 'vm', 'resolve.mjs'), join(ROOT, 'vm', 'kernels.json'), id], { input, encoding: 'utf8', stdio: 'pipe' });
    expect(cli('6.1', INDEX)).toBe('linux-image-6.1.0-57-amd64=6.1.192-3 bookworm-security\n');
    let err: { status?: number; stderr?: string } = {};
    try {
      cli('5.10', INDEX);
    } catch (e) {
      err = e as typeof err;
    }
    expect(err.status).toBe(1);
    expect(err.stderr?.trim().split('\n')).toHaveLength(1);
    try {
      cli('7.3', INDEX);
    } catch (e) {
      err = e as typeof err;
    }
    expect(err.status).toBe(2);
    expect(err.stderr).toMatch(/^no kernel series "7\.3" in .*kernels\.json \(it has 5\.10, 6\.1, 6\.12, 7\.x\)\n$/);
  });
});
