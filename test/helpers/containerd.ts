/**
 * A containerd of the test's own: Debian's containerd and runc, started with
 * a config under a temp dir (its own root, state and socket), the CRI plugin
 * on with a sandbox image built here (oci_image.py; no registry is reachable)
 * and pods on the host network, or in a network namespace of their own made
 * without a bridge or a host route (CNI host-device on a veth end made here;
 * a shared machine). Containers run the host's /usr bind-mounted read-only,
 * so python3 is there.
 *
 * stop() undoes everything, even after a failed test: pods and containers,
 * shims (found by this instance's socket path in their command line, each
 * killed by pid), mounts under the dir, the cgroups the runtime made in
 * every hierarchy, the veth, containerd itself, the dir.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { until } from './until.js';

const run = promisify(execFile);
const HERE = dirname(fileURLToPath(import.meta.url));
const ADMIN_PROTO = join(HERE, '..', 'fixtures', 'cri', 'admin.proto');
export const SANDBOX_IMAGE = 'wstrace.test/pause:1';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Any = any;

/** Why containerd cannot run here, or undefined when it can (tools present, root, cgroup2 mounted). */
export function containerdBlocker(): string | undefined {
  if (process.getuid?.() !== 0) return 'containerd tests need root';
  for (const tool of ['/usr/bin/containerd', '/usr/bin/ctr', '/usr/sbin/runc', '/usr/bin/busybox', '/usr/lib/cni/host-device']) {
    if (!existsSync(tool) && !existsSync(tool.replace('/usr/sbin/', '/usr/bin/'))) return `${tool} is missing: run ./setup.sh (it installs containerd, runc, busybox-static and containernetworking-plugins)`;
  }
  return undefined;
}

export interface PodSpec {
  readonly name: string;
  readonly namespace: string;
  readonly uid: string;
  readonly container: string;
  /** argv of the container's process (the host's /usr is there). */
  readonly command: readonly string[];
  /**
   * A network namespace of the pod's own (CNI host-device: one end of a veth
   * pair made here becomes its eth0, 192.0.2.2/24 from TEST-NET-1, nothing
   * routed on the host); otherwise the pod is on the host's network.
   */
  readonly ownNetns?: boolean;
}

export class TestContainerd {
  private readonly pods: string[] = [];
  private readonly ctrIds: string[] = [];
  private readonly attached: ChildProcess[] = [];
  private readonly podCgroups: string[] = [];
  private cri: Any;
  private stopped = false;
  private vethMade = false;

  private constructor(
    readonly dir: string,
    private readonly proc: ChildProcess,
  ) {}

  get socket(): string {
    return join(this.dir, 'containerd.sock');
  }

  /** The device the CNI config moves into a pod of its own network (a name per test process, under 15 characters). */
  get podDevice(): string {
    return `wstc${process.pid % 100000}`;
  }

  /** The log containerd wrote, for a failure's message. */
  log(): string {
    try {
      return readFileSync(join(this.dir, 'containerd.log'), 'utf8');
    } catch {
      return '';
    }
  }

  static async start(prefix: string): Promise<TestContainerd> {
    const dir = mkdtempSync(join(tmpdir(), `${prefix}-`));
    const config = [
      'version = 2',
      `root = "${dir}/root"`,
      `state = "${dir}/state"`,
      '[grpc]',
      `  address = "${dir}/containerd.sock"`,
      '[ttrpc]',
      `  address = "${dir}/containerd.sock.ttrpc"`,
      '[plugins."io.containerd.grpc.v1.cri"]',
      `  sandbox_image = "${SANDBOX_IMAGE}"`,
      // Where this process may not lower oom_score_adj (a sandboxed CI), the CRI's -998 for sandboxes fails runc.
      '  restrict_oom_score_adj = true',
      // The native snapshotter (plain copies): overlayfs cannot stack on a root or /tmp that is itself overlayfs (fresh CI roots are).
      '  [plugins."io.containerd.grpc.v1.cri".containerd]',
      '    snapshotter = "native"',
      '  [plugins."io.containerd.grpc.v1.cri".cni]',
      '    bin_dir = "/usr/lib/cni"',
      `    conf_dir = "${dir}/cni"`,
    ].join('\n');
    writeFileSync(join(dir, 'config.toml'), config + '\n');
    mkdirSync(join(dir, 'cni'));
    // Pods of their own network get a device made by runPod (host-device), an address from TEST-NET-1, no route on the host.
    writeFileSync(
      join(dir, 'cni', '10-wstrace-test.conflist'),
      JSON.stringify({
        cniVersion: '0.4.0',
        name: 'wstrace-test',
        plugins: [{ type: 'host-device', device: `wstc${process.pid % 100000}`, ipam: { type: 'static', addresses: [{ address: '192.0.2.2/24' }] } }],
      }),
    );
    const out = openSync(join(dir, 'containerd.log'), 'a');
    const proc = spawn('containerd', ['--config', join(dir, 'config.toml')], { stdio: ['ignore', out, out] });
    closeSync(out);
    const c = new TestContainerd(dir, proc);
    try {
      await until(async () => (await c.ctr(['version'], 5000)).includes('Server:'), { what: 'containerd answering on its socket', timeoutMs: 30_000 });
      await run('python3', [join(HERE, 'oci_image.py'), join(dir, 'pause.tar'), SANDBOX_IMAGE]);
      await c.ctr(['-n', 'k8s.io', 'images', 'import', '--snapshotter', 'native', join(dir, 'pause.tar')], 60_000);
    } catch (err) {
      await c.stop();
      throw new Error(`containerd did not start: ${String(err)}\n${c.log().slice(-2000)}`);
    }
    return c;
  }

  /** ctr against this containerd; resolves with stdout. */
  async ctr(args: readonly string[], timeoutMs = 30_000): Promise<string> {
    const { stdout } = await run('ctr', ['--address', this.socket, ...args], { timeout: timeoutMs });
    return stdout;
  }

  /**
   * `ctr run --rm` of a container with the host's /usr read-only and `mounts`
   * (host dir → container dir), attached: its stdin and stdout are the
   * process's. The container gets its own network namespace and the cgroup
   * /default/<id>.
   */
  runCtr(id: string, argv: readonly string[], mounts: ReadonlyArray<readonly [string, string]> = []): ChildProcess {
    const rootfs = join(this.dir, `rootfs-${id}`);
    mkdirSync(rootfs, { recursive: true });
    for (const d of ['usr', 'proc', 'dev', 'sys', 'tmp', 'etc']) mkdirSync(join(rootfs, d), { recursive: true });
    for (const [name, target] of [
      ['lib', 'usr/lib'],
      ['lib64', 'usr/lib64'],
      ['bin', 'usr/bin'],
    ] as const)
      if (!existsSync(join(rootfs, name))) symlinkSync(target, join(rootfs, name));
    const mountFlags = [['/usr', '/usr'] as const, ...mounts].flatMap(([src, dst]) => ['--mount', `type=bind,src=${src},dst=${dst},options=rbind:ro`]);
    // ctr takes its flags before the rootfs and id; the command gets its full path (no PATH search).
    const child = spawn('ctr', ['--address', this.socket, 'run', '--rm', ...mountFlags, '--rootfs', rootfs, id, ...argv], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.ctrIds.push(id);
    this.attached.push(child);
    return child;
  }

  private criClient(): Any {
    if (!this.cri) {
      const pkg = grpc.loadPackageDefinition(loadSync(ADMIN_PROTO, { defaults: true })) as Any;
      this.cri = new pkg.runtime.v1.RuntimeService(`unix://${this.socket}`, grpc.credentials.createInsecure());
    }
    return this.cri;
  }

  private call<T>(method: string, req: object, timeoutMs = 60_000): Promise<T> {
    return new Promise((resolve, reject) =>
      this.criClient()[method](req, { deadline: Date.now() + timeoutMs }, (err: Error | null, res: T) => (err ? reject(err) : resolve(res))),
    );
  }

  /**
   * A pod through the CRI, as a kubelet would make it: a sandbox on the host
   * network, in the besteffort pods' cgroup (cgroupfs names), and one
   * container in it.
   */
  async runPod(spec: PodSpec): Promise<{ sandboxId: string; containerId: string }> {
    if (spec.ownNetns) {
      // The CNI config names this device: one pod with its own namespace at a time.
      if (this.vethMade) throw new Error('TestContainerd: one pod with its own network namespace at a time');
      await run('ip', ['link', 'add', this.podDevice, 'type', 'veth', 'peer', 'name', `${this.podDevice}h`]);
      this.vethMade = true;
    }
    const network = spec.ownNetns ? 0 : 2; // NamespaceMode POD (its own, through CNI) or NODE (the host's)
    const cgroupParent = `/kubepods/besteffort/pod${spec.uid}`;
    this.podCgroups.push(cgroupParent);
    const sandboxConfig = {
      metadata: { name: spec.name, uid: spec.uid, namespace: spec.namespace, attempt: 0 },
      logDirectory: join(this.dir, 'pods', spec.uid),
      linux: { cgroupParent, securityContext: { namespaceOptions: { network, pid: 1, ipc: 0 } } },
    };
    mkdirSync(sandboxConfig.logDirectory, { recursive: true });
    const { podSandboxId } = await this.call<{ podSandboxId: string }>('runPodSandbox', { config: sandboxConfig });
    this.pods.push(podSandboxId);
    const { containerId } = await this.call<{ containerId: string }>('createContainer', {
      podSandboxId,
      sandboxConfig,
      config: {
        metadata: { name: spec.container, attempt: 0 },
        image: { image: SANDBOX_IMAGE },
        command: [...spec.command],
        mounts: [
          { containerPath: '/usr', hostPath: '/usr', readonly: true },
          { containerPath: '/wst', hostPath: HERE, readonly: true },
        ],
        logPath: `${spec.container}.log`,
      },
    });
    await this.call('startContainer', { containerId });
    return { sandboxId: podSandboxId, containerId };
  }

  /** What a pod's container wrote (CRI log lines). */
  podLog(uid: string, container: string): string {
    try {
      return readFileSync(join(this.dir, 'pods', uid, `${container}.log`), 'utf8');
    } catch {
      return '';
    }
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    const errors: string[] = [];
    const step = async (what: string, fn: () => Promise<unknown>) => {
      try {
        await fn();
      } catch (err) {
        errors.push(`${what}: ${String(err)}`);
      }
    };
    for (const id of this.pods) {
      await step(`stop pod ${id}`, () => this.call('stopPodSandbox', { podSandboxId: id }, 30_000));
      await step(`remove pod ${id}`, () => this.call('removePodSandbox', { podSandboxId: id }, 30_000));
    }
    this.cri?.close();
    for (const child of this.attached) child.stdin?.end();
    for (const id of this.ctrIds) await step(`kill ${id}`, () => this.ctr(['task', 'kill', '-s', 'SIGKILL', id], 10_000).catch(() => undefined));
    await step('ctr run processes to end', () =>
      until(() => this.attached.every((c) => c.exitCode !== null || c.signalCode !== null), { what: 'ctr run to end', timeoutMs: 15_000 }),
    );
    for (const id of this.ctrIds) await step(`remove ${id}`, () => this.ctr(['containers', 'rm', id], 10_000).catch(() => undefined));
    for (const c of this.attached) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');

    // containerd, then its shims (they outlive it by design), each by pid.
    if (this.proc.exitCode === null && this.proc.signalCode === null) {
      this.proc.kill('SIGTERM');
      await step('containerd to exit', () =>
        until(() => this.proc.exitCode !== null || this.proc.signalCode !== null, { what: 'containerd to exit', timeoutMs: 15_000 }).catch(() => {
          this.proc.kill('SIGKILL');
        }),
      );
    }
    for (const pid of this.shimPids()) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    await step('shims to exit', () => until(() => this.shimPids().length === 0, { what: 'the shims to exit', timeoutMs: 15_000 }));
    await step('unmount', async () => {
      for (const m of this.mountsUnder()) await run('umount', ['-l', m]).catch(() => undefined);
    });
    await step('cgroups', () => this.removeCgroups());
    // Removing the host end removes the pair, wherever the other end went back to.
    if (this.vethMade) await run('ip', ['link', 'del', `${this.podDevice}h`]).catch(() => undefined);
    rmSync(this.dir, { recursive: true, force: true });
    if (errors.length) process.stderr.write(`TestContainerd.stop: ${errors.join('; ')}\n`);
  }

  /** Shims of this instance: their command line names its socket. */
  private shimPids(): number[] {
    const out: number[] = [];
    for (const name of readdirSync('/proc')) {
      if (!/^\d+$/.test(name)) continue;
      try {
        const cmd = readFileSync(`/proc/${name}/cmdline`, 'utf8');
        if (cmd.includes('containerd-shim') && cmd.includes(this.socket)) out.push(Number(name));
      } catch {
        // gone meanwhile
      }
    }
    return out;
  }

  private mountsUnder(): string[] {
    return readFileSync('/proc/self/mountinfo', 'utf8')
      .split('\n')
      .map((l) => l.split(' ')[4] ?? '')
      .filter((m) => m.startsWith(this.dir + '/'))
      .sort((a, b) => b.length - a.length);
  }

  /** The cgroups runc made for our containers and pods, in the v2 hierarchy and every v1 one; parents only when empty. */
  private async removeCgroups(): Promise<void> {
    const mounts = readFileSync('/proc/self/mountinfo', 'utf8')
      .split('\n')
      .filter((l) => / - cgroup2? /.test(l))
      .map((l) => l.split(' ')[4]!);
    const roots = [...this.ctrIds.map((id) => `/default/${id}`), ...this.podCgroups];
    const failed: string[] = [];
    for (const m of mounts) {
      for (const r of roots) {
        const top = join(m, r);
        if (!existsSync(top)) continue;
        const dirs: string[] = [];
        const walk = (d: string) => {
          dirs.push(d);
          for (const e of readdirSync(d, { withFileTypes: true })) if (e.isDirectory()) walk(join(d, e.name));
        };
        walk(top);
        for (const d of dirs.reverse()) {
          // One that stays busy is reported, and the rest are still removed.
          await until(
            () => {
              try {
                rmdirSync(d);
              } catch (e) {
                if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
              }
              return true;
            },
            // Killed processes leave their cgroup only once reaped: slow on a loaded machine.
            { what: `cgroup ${d} removed`, timeoutMs: 30_000 },
          ).catch((err: unknown) => failed.push(String(err)));
        }
      }
      // The shared parents go only when nothing else is in them.
      for (const p of ['/default', '/kubepods/besteffort', '/kubepods']) {
        try {
          rmdirSync(join(m, p));
        } catch {
          // in use, or never made
        }
      }
    }
    if (failed.length) throw new Error(failed.join('; '));
  }
}
