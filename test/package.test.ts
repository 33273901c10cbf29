/**
 * Installing on a host without a compiler (issue 17 item 1): `npm pack` makes
 * a tarball with the prebuilt addon (libbpf linked in, the BPF objects
 * compiled in); installed with no compiler on PATH it runs `--version` and a
 * real `watch` that loads BPF. The .deb made from it installs the same tree,
 * the systemd unit and /etc/default/wstrace, and the agent runs from it the
 * way the unit starts it, with the unit's capabilities only.
 *
 * Packs once for the whole file (beforeAll): the pack builds the prebuilt
 * addon in a scratch copy, so the clone's own build is left alone.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { describeKernel, ROOT, TestNetns, delta, waitProgramsGone, heldProgramIds } from './helpers/kernel.js';
import { pathWithoutCompilers, spawnCommand } from './helpers/package.js';
import { until } from './helpers/until.js';

const VERSION = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;

function sh(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): string {
  return execFileSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 << 20, timeout: 240_000, ...opts });
}

/** The hashes the prebuild recorded (sha256sum format), by object name. */
function recordedHashes(file: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of readFileSync(file, 'utf8').trim().split('\n')) {
    const [hash, name] = line.split(/\s+/);
    out[name!.replace(/\.bpf\.o$/, '')] = hash!;
  }
  return out;
}

/** The hashes `wstrace --version` prints, by object name. */
function printedHashes(version: string): Record<string, string> {
  return Object.fromEntries([...version.matchAll(/^bpf object (\S+): sha256 ([0-9a-f]{64})/gm)].map((m) => [m[1]!, m[2]!]));
}

/** systemd's capability names as setpriv's --bounding-set takes them (CAP_BPF -> +bpf). */
function boundingSet(unit: string): string {
  const caps = /^CapabilityBoundingSet=(.*)$/m.exec(unit)![1]!.trim().split(/\s+/);
  return ['-all', ...caps.map((c) => `+${c.replace(/^CAP_/, '').toLowerCase()}`)].join(',');
}

describeKernel('packages: the npm tarball and the .deb, on a host without a compiler', () => {
  let work: string;
  let tarball: string;
  let deb: string;
  let bare: string;
  let env: NodeJS.ProcessEnv;
  let ns: TestNetns;

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'wstrace-package-'));
    // The developer's side, as `npm run package` does it: the prebuilt addon, npm pack, the .deb from the tarball.
    // npm pack's own prepack step would also rebuild dist/, rewriting files that other test files running at the
    // same time import; `npm test` has just built dist/, so the test builds the addon and packs without it.
    sh(join(ROOT, 'scripts/prebuild.sh'), [], { cwd: ROOT });
    const packed = sh('npm', ['pack', '--silent', '--ignore-scripts', '--pack-destination', work], { cwd: ROOT }).trim().split('\n').pop()!;
    tarball = join(work, packed);
    deb = sh(join(ROOT, 'scripts/build-deb.sh'), [tarball, work], { cwd: ROOT }).trim().split('\n').pop()!;
    // The operator's side: every command of this machine but the toolchain.
    bare = pathWithoutCompilers(join(work, 'bin'));
    env = { HOME: process.env.HOME ?? '/root', PATH: bare, LANG: 'C.UTF-8' };
    if (process.env.NODE_EXTRA_CA_CERTS) env.NODE_EXTRA_CA_CERTS = process.env.NODE_EXTRA_CA_CERTS;
    ns = await TestNetns.create('wst-pkg');
  }, 240_000);

  afterAll(async () => {
    await ns?.destroy();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('the tarball carries dist, bin, proto, the prebuilt addon and a source fallback, and no build output', () => {
    expect(tarball).toMatch(new RegExp(`/wstrace-${VERSION.replace(/\./g, '\\.')}\\.tgz$`));
    const entries = sh('tar', ['-tzf', tarball]).trim().split('\n');
    for (const f of [
      'package/bin/wstrace.js',
      'package/dist/cli/main.js',
      'package/proto/wstrace/v1/tracer.proto',
      'package/prebuilds/linux-x64/wstrace.napi.glibc.node',
      'package/prebuilds/linux-x64/bpf-objects.sha256',
      'package/prebuilds/linux-x64/libbpf.version',
      // What `node-gyp-build` compiles from when no prebuilt matches the host.
      'package/binding.gyp',
      'package/Makefile',
      'package/scripts/link-flags.sh',
      'package/bpf/wstrace.bpf.c',
      'package/addon/tracer.cc',
    ]) {
      expect(entries).toContain(f);
    }
    expect(entries.filter((e) => e.startsWith('package/build/') || e.startsWith('package/bpf/.output/'))).toEqual([]);

    // The prebuilt needs glibc, libelf and zlib at run time: libbpf and libstdc++ are inside it.
    const unpacked = join(work, 'unpacked');
    mkdirSync(unpacked);
    sh('tar', ['-xzf', tarball, '-C', unpacked, 'package/prebuilds']);
    const libs = sh('ldd', [join(unpacked, 'package/prebuilds/linux-x64/wstrace.napi.glibc.node')])
      .trim()
      .split('\n')
      .map((l) => l.trim().split(/\s+/)[0]!.replace(/^.*\//, ''));
    expect(libs.filter((l) => !/^(linux-vdso\.so\.1|libc\.so\.6|libm\.so\.6|ld-linux-x86-64\.so\.2|libelf\.so\.1|libz\.so\.1)$/.test(l))).toEqual([]);
  });

  it('installs with npm install -g and no compiler on PATH, then --version and a real watch run from the installed tree', async () => {
    for (const tool of ['cc', 'c++', 'gcc', 'make', 'clang']) {
      expect(spawnSync('sh', ['-c', `command -v ${tool}`], { env }).status, `${tool} must not be on the PATH`).not.toBe(0);
    }
    const prefix = join(work, 'prefix');
    // --prefix also moves npm's global config to <prefix>/etc/npmrc: name this machine's own (where a site's cafile,
    // registry or proxy may be set, as on a fresh root), so the install reaches the registry as the operator's would.
    const globalconfig = sh('npm', ['config', 'get', 'globalconfig'], { env }).trim();
    // Install scripts on (npm 11 wants them allowed by name): the package's own checks that the prebuilt loads,
    // and would fall back to `make` and node-gyp, which this PATH lacks, if it did not.
    const install = spawnSync(
      'npm',
      // --loglevel=http: a failure below shows each registry fetch, so a slow registry and a hang read differently.
      ['install', '-g', '--prefix', prefix, '--globalconfig', globalconfig, '--foreground-scripts', '--allow-scripts=wstrace,protobufjs', '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=http', tarball],
      { env, encoding: 'utf8', timeout: 180_000 },
    );
    const said = `${install.error ? `${install.error.message} (signal ${install.signal})\n` : ''}${install.stderr.split('\n').slice(-60).join('\n')}`;
    expect(install.status, said).toBe(0);
    expect(install.stdout + install.stderr).toMatch(/> node-gyp-build "make -s bpf"/);
    const pkg = join(prefix, 'lib/node_modules/wstrace');
    expect(existsSync(join(pkg, 'build')), 'nothing was compiled at install').toBe(false);

    const wstrace = join(prefix, 'bin/wstrace');
    const version = sh(wstrace, ['--version'], { env });
    expect(version).toMatch(new RegExp(`^wstrace ${VERSION.replace(/\./g, '\\.')}\n`));
    expect(version).toMatch(/^addon: prebuilt /m);
    expect(version).toContain(join(pkg, 'prebuilds/linux-x64/wstrace.napi.glibc.node'));
    // The exact libbpf linked in: the version of the Debian source the prebuild compiled (that of libbpf-dev here).
    const libbpfSource = sh('dpkg-query', ['-W', '-f=${source:Version}', 'libbpf-dev']).trim();
    expect(version).toMatch(/^libbpf: v1\.\d+ \(/m);
    expect(version).toContain(`(${libbpfSource}, Debian's source)`);
    // The objects compiled into the installed addon are the ones the prebuild compiled.
    expect(printedHashes(version)).toEqual(recordedHashes(join(pkg, 'prebuilds/linux-x64/bpf-objects.sha256')));
    expect(Object.keys(printedHashes(version)).sort()).toEqual(['wstrace', 'wstrace_ext']);
    expect(sh(wstrace, ['-V'], { env })).toBe(version);
    const both = spawnSync(wstrace, ['--version', 'watch'], { env, encoding: 'utf8' });
    expect(both.status).toBe(1);
    expect(both.stderr.trim().split('\n')).toEqual(['wstrace: --version takes no command or other flag: run `wstrace --version` on its own.']);

    // A real watch from the installed tree, as root: BPF loads from the prebuilt addon and sees the traffic.
    const before = ns.nstat();
    const w = spawnCommand([wstrace, 'watch', '--json', '--duration', '60', '--netns', ns.name, '--port', '7611'], env);
    await w.waitStderr('live:');
    await ns.traffic('closed-port', 4, 7611);
    await until(() => w.stdout(), {
      what: 'four resets printed',
      accept: (out) => out.split('\n').filter((l) => l.includes('"reset_sent"')).length >= 4,
    });
    w.child.kill('SIGINT');
    expect(await w.closed).toBe(0);
    const sent = w
      .stdout()
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { kind: string; lport: number })
      .filter((e) => e.kind === 'reset_sent' && e.lport === 7611);
    expect(sent).toHaveLength(delta(ns.nstat(), before, 'TcpOutRsts'));
    expect(sent).toHaveLength(4);
    expect(w.stderr()).toMatch(/4 resets sent/);

    // A host no prebuilt fits and where nothing was compiled: one sentence naming the fix, exit 1.
    renameSync(join(pkg, 'prebuilds'), join(pkg, 'prebuilds.away'));
    try {
      const none = spawnSync(wstrace, ['--version'], { env, encoding: 'utf8' });
      expect(none.status).toBe(1);
      expect(none.stdout).toBe(`wstrace ${VERSION}\n`);
      expect(none.stderr.trim().split('\n')).toEqual([
        'wstrace: no native addon for linux-x64 is in the package or built here: compile one where a compiler is present, with `npm install -g --allow-scripts=wstrace` and the package, or ./setup.sh in a clone.',
      ]);
    } finally {
      renameSync(join(pkg, 'prebuilds.away'), join(pkg, 'prebuilds'));
    }
    // npm install and a cold agent start take tens of seconds on a busy two-core machine.
  }, 180_000);

  it('the .deb installs the same tree, /usr/bin/wstrace, the unit and its conffile, and the agent runs from it as the unit starts it', async () => {
    const info = sh('dpkg-deb', ['--field', deb, 'Package', 'Version', 'Architecture', 'Depends']);
    expect(info).toContain('Package: wstrace\n');
    expect(info).toContain(`Version: ${VERSION}\n`);
    expect(info).toContain('Architecture: amd64\n');
    // Honest about Node: Debian 12's own nodejs (18) does not satisfy it.
    expect(info).toMatch(/^Depends: nodejs \(>= 20\), libc6 \(>= 2\.36\), libelf1, zlib1g$/m);
    const control = join(work, 'control');
    sh('dpkg-deb', ['--control', deb, control]);
    expect(readFileSync(join(control, 'conffiles'), 'utf8').trim()).toBe('/etc/default/wstrace');

    const root = join(work, 'debroot');
    sh('dpkg-deb', ['-x', deb, root]);
    const unitPath = join(root, 'lib/systemd/system/wstrace-agent.service');
    const unit = readFileSync(unitPath, 'utf8');
    expect(unit).toBe(readFileSync(join(ROOT, 'contrib/wstrace-agent.service'), 'utf8'));
    expect(readFileSync(join(root, 'etc/default/wstrace'), 'utf8')).toBe(readFileSync(join(ROOT, 'contrib/wstrace.default'), 'utf8'));
    for (const line of ['NoNewPrivileges=yes', 'ProtectSystem=strict', 'ProtectHome=yes', 'PrivateTmp=yes', 'RuntimeDirectory=wstrace', 'RuntimeDirectoryMode=0700', 'EnvironmentFile=-/etc/default/wstrace']) {
      expect(unit.split('\n')).toContain(line);
    }
    expect(boundingSet(unit)).not.toMatch(/sys_admin/);

    // systemd's own check of the unit, where systemd-analyze exists: no warning at all
    // (it exits 0 on unknown keys, so its output is what counts). The command's path is
    // the installed tree's, as the unit's /usr/bin/wstrace is on a real install.
    if (spawnSync('sh', ['-c', 'command -v systemd-analyze']).status === 0) {
      const copy = join(work, 'wstrace-agent.service');
      execFileSync('sh', ['-c', `sed 's|^ExecStart=/usr/bin/wstrace|ExecStart=${root}/usr/bin/wstrace|' "$1" > "$2"`, 'sh', unitPath, copy]);
      const verify = spawnSync('systemd-analyze', ['verify', '--man=no', copy], { encoding: 'utf8' });
      expect(verify.status).toBe(0);
      expect((verify.stdout + verify.stderr).trim()).toBe('');
    }

    // The installed tree is the npm package's, with the prebuilt addon.
    const lib = join(root, 'usr/lib/wstrace');
    const wstrace = join(root, 'usr/bin/wstrace');
    const version = sh(wstrace, ['--version'], { env });
    expect(version).toMatch(/^addon: prebuilt /m);
    expect(version).toContain(join(lib, 'prebuilds/linux-x64/wstrace.napi.glibc.node'));
    expect(printedHashes(version)).toEqual(recordedHashes(join(lib, 'prebuilds/linux-x64/bpf-objects.sha256')));

    // The agent as systemd starts it: ExecStart with $WSTRACE_AGENT_OPTS from the EnvironmentFile, split into
    // words; the RuntimeDirectory made 0700 (here under the test's directory instead of /run); the capability
    // bounding set and no-new-privs applied; the PATH without a compiler.
    const opts = /^WSTRACE_AGENT_OPTS="(.*)"$/m.exec(readFileSync(join(root, 'etc/default/wstrace'), 'utf8'))![1]!;
    const runtime = join(work, 'run-wstrace');
    mkdirSync(runtime, { mode: 0o700 });
    chmodSync(runtime, 0o700);
    const exec = /^ExecStart=(.*)$/m
      .exec(unit)![1]!
      .replace('$WSTRACE_AGENT_OPTS', opts.replaceAll('/run/wstrace', runtime))
      .split(/\s+/)
      .map((w) => (w === '/usr/bin/wstrace' ? wstrace : w));
    expect(exec.slice(1)).toEqual(['agent', '--listen', `unix:${runtime}/agent.sock`]);
    const agent = spawnCommand(['setpriv', '--bounding-set', boundingSet(unit), '--inh-caps', '-all', '--no-new-privs', '--', ...exec], env);
    await agent.waitStderr('listening on');
    const socket = join(runtime, 'agent.sock');
    expect(statSync(socket).mode & 0o777).toBe(0o600);
    // Loaded with those capabilities only: every portable hook live, asked over the unix socket.
    const got = JSON.parse(sh(wstrace, ['info', '--connect', `unix:${socket}`, '--json'], { env })) as {
      version: string;
      hooks: Array<{ signalName: string; attached: boolean }>;
    };
    expect(got.version).toBe(VERSION);
    for (const signal of ['reset_sent', 'reset_received', 'timewait']) {
      expect(got.hooks.find((h) => h.signalName === signal)?.attached, signal).toBe(true);
    }
    const ids = heldProgramIds(agent.child.pid!);
    expect(ids.length).toBeGreaterThan(0);
    agent.child.kill('SIGTERM');
    expect(await agent.closed).toBe(0);
    expect(existsSync(socket)).toBe(false);
    expect(await waitProgramsGone(ids)).toEqual([]);
    // npm install and a cold agent start take tens of seconds on a busy two-core machine.
  }, 180_000);
});
