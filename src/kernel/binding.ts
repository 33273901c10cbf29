/**
 * The addon's surface, typed, plus the checks that go with it: everything
 * the tracer needs from the machine comes through this one interface, so a
 * fake that implements it runs the tracer's production code path. Only files
 * of src/kernel/ import this file; other layers reach the addon through
 * src/kernel/index.ts (openTracer, and loadBinding for socket dumps and
 * namespace file reads, which the host readers take as a parameter).
 */
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

import { UserError } from '../protocol/errors.js';
import type { Family } from '../signals/event.js';
import { canLoadBpf, NEEDS_PRIVILEGE } from './errors.js';

export type { Family };

export interface ListenerSocket {
  readonly family: Family;
  readonly addr: string;
  readonly port: number;
  /** Children waiting in the accept queue now (inet_diag idiag_rqueue). */
  readonly queue: number;
  /** The accept-queue limit the kernel applies (idiag_wqueue). */
  readonly backlog: number;
  readonly inode: number;
  readonly uid: number;
  /** The socket's cgroup v2 id; 0 or absent when the kernel does not say (before 5.7). */
  readonly cgroup?: number;
}

export interface TimewaitGroup {
  readonly family: Family;
  readonly raddr: string;
  readonly rport: number;
  readonly count: number;
}

export interface SocketDump {
  readonly listeners: ListenerSocket[];
  readonly timewait: TimewaitGroup[];
  readonly timewaitTotal: number;
}

export interface DumpOptions {
  /** Path of a network-namespace file (/run/netns/NAME, /proc/PID/ns/net). */
  readonly netns?: string;
}

/**
 * syn_drop's tracepoint route, for diagnosis: rises an end could not take
 * (interrupted at every try: they wait for the next end on the CPU), twin
 * marks never cleared, runs the kernel skipped in the twinned programs, and,
 * for a namespace asked for, the counts its ends have taken so far (summed
 * over CPUs): the namespace's ListenOverflows, ListenDrops, TCPReqQFullDrop
 * and SyncookiesSent less these are rises no end has taken yet.
 */
export interface RouteState {
  lost: number;
  stale: number;
  twinSkips: number;
  settled?: { overflows: number; drops: number; reqqFull: number; cookies: number };
}

/** What the native tracer object offers; see addon/tracer.cc. */
export interface NativeTracer {
  /** Per hook: attached or not, and the error when not. */
  hooks(): NativeHook[];
  /** Exact counters from the BPF maps; with true, only `totals` (no map dumps). */
  counters(totalsOnly?: boolean): NativeCounters;
  /** Listening ports: their resets keep their own row inside the ephemeral range. */
  keepPorts(ports: number[]): void;
  /** Delivers every event already in the ring buffer, synchronously. */
  flush(): void;
  /**
   * Takes every summary row since the last call (struct wst_summary_key and
   * wst_summary_val arrays); rejects while another drain runs.
   */
  drainSummaries(): Promise<NativeSummaries>;
  /** IDs of the loaded BPF programs (for leak checks). */
  programIds(): number[];
  /** Runs the kernel skipped because they would have nested in a run of the same program on the same CPU. */
  skippedRuns(): number;
  routeState(netns?: number): RouteState;
  close(): void;
}

export interface NativeHook {
  /** What it shows: reset_sent, syn_drop, accept_residency, ... */
  readonly signal: string;
  /** Kernel hook point(s). */
  readonly name: string;
  /** raw_tp, fentry, fexit, kprobe, kretprobe; empty when blind. */
  readonly variant: string;
  readonly attached: boolean;
  /** Why not attached: every variant tried, and how it failed. */
  readonly error: string;
  /** Live through another signal's programs (variant and name are theirs): its own variant, loaded but detached. */
  readonly standsDown?: string;
}

export interface NativeCounters {
  /** Per-CPU totals summed, indexed by enum wst_counter. */
  readonly totals: number[];
  /** Raw map entries: key and value bytes, decoded in src/kernel/decode.ts. */
  readonly listeners: Array<[Buffer, Buffer]>;
  readonly resets: Array<[Buffer, Buffer]>;
  readonly timewaits: Array<[Buffer, Buffer]>;
  readonly residency: Array<[Buffer, Buffer]>;
  /** Runs of each program, indexed by enum wst_prog. */
  readonly hits: number[];
}

export interface NativeSummaries {
  readonly rows: number;
  readonly keys: Buffer;
  readonly values: Buffer;
}

export interface NativeOpenOptions {
  readonly ports: number[];
  readonly netns: number;
  readonly ringBytes: number;
  readonly fullEventIntervalNs: number;
  /**
   * Called on the JS thread with many records. The view is of memory the
   * addon reuses for the next batch: decode it before returning.
   */
  readonly onBatch: (batch: Uint8Array) => void;
  /** Per signal, the one variant to try ("none": none); others pick the best. */
  readonly variants?: Readonly<Record<string, string>>;
  /** Count every run of every program (the kernel matrix's "fired"); off by default. */
  readonly countHits?: boolean;
  /** ip_local_port_range of the traced namespace: resets on these local ports (no listener) count as port 0. */
  readonly ephemeralPorts?: [number, number];
  /** Events per second sent in full (0 or absent: all); the rest are counted in summary rows. */
  readonly eventBudget?: number;
  /** Keep only sockets in these cgroups or below them: each a cgroup id and its level (depth). */
  readonly cgroups?: ReadonlyArray<{ readonly id: number; readonly level: number }>;
}

export interface Layout {
  readonly size: number;
  readonly offsets: Readonly<Record<string, number>>;
}

/** What build/Release/wstrace.node exports; see addon/module.cc. */
export interface NativeBinding {
  open(options: NativeOpenOptions): NativeTracer;
  /** Sizes and offsets of the C structs, for the decoder test. */
  layout(): Readonly<Record<string, Layout>>;
  /** Names of a kernel enum from the running kernel's BTF, by value. */
  enumNames(name: string): Record<number, string>;
  /** Monotonic-clock offset: wall ns = ktime ns + this. */
  clockOffsetNs(): bigint;
  dumpSockets(options?: DumpOptions): Promise<SocketDump>;
  /** Reads files as seen from inside a network namespace. */
  readFilesInNetns(netns: string, paths: string[]): Promise<string[]>;
}

export interface Binding extends NativeBinding {
  /**
   * Why this process cannot load BPF programs, as one sentence naming the fix,
   * or undefined when it can. Asked before open(), whose own errors are
   * errno numbers.
   */
  loadBlocker(): string | undefined;
}

/** The package root: where binding.gyp's build/ lands. */
export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error('wstrace: cannot find the package root');
    dir = up;
  }
  return dir;
}

/** What a build of the addon carries, for `wstrace --version` (addon/tracer.cc BuildInfo). */
interface NativeBuildInfo {
  readonly libbpf: string;
  readonly bpfObjects: Readonly<Record<string, Buffer>>;
}

export interface AddonBuild {
  /** The wstrace.node file loaded. */
  readonly path: string;
  /**
   * prebuilt: shipped in the package (prebuilds/linux-x64/, scripts/prebuild.sh), libbpf
   * linked into it; source: compiled on this host (setup.sh, or npm's install step
   * when no prebuilt matched), linked to the system's libbpf.
   */
  readonly origin: 'prebuilt' | 'source';
  /** libbpf's own version string (v1.1), for a prebuilt with the exact source version linked in; a source build's is the system's. */
  readonly libbpf: string;
  /** Each BPF object compiled into the addon, by name, with the SHA-256 of its bytes. */
  readonly bpfObjects: ReadonlyArray<{ readonly name: string; readonly sha256: string; readonly bytes: number }>;
}

let loaded: Binding | undefined;
let loadedFrom: { path: string; native: NativeBinding & { buildInfo(): NativeBuildInfo } } | undefined;

/**
 * Finds the addon the usual prebuilt-binary way (node-gyp-build): a compiled
 * build/Release/wstrace.node first, else the prebuilt for this platform, arch
 * and libc under prebuilds/. An installed package has build/ only when npm's
 * install step compiled it because no prebuilt matched; in a clone, a fresh
 * source build is never shadowed by an older prebuild.
 */
function addonPath(root: string): string {
  const locate = createRequire(import.meta.url)('node-gyp-build') as { path(dir: string): string };
  try {
    return locate.path(root);
  } catch {
    throw new UserError(
      `no native addon for ${process.platform}-${process.arch} is in the package or built here: ${BUILD_IT}.`,
    );
  }
}

/** The fix when no addon fits this host: compile one (npm 11 runs a package's install step only when allowed by name). */
const BUILD_IT =
  'compile one where a compiler is present, with `npm install -g --allow-scripts=wstrace` and the package, or ./setup.sh in a clone';

/** Loads the addon once. */
export function loadBinding(): Binding {
  if (loaded) return loaded;
  const path = addonPath(packageRoot());
  let native: NativeBinding & { buildInfo(): NativeBuildInfo };
  try {
    native = createRequire(import.meta.url)(path) as typeof native;
  } catch (err) {
    // dlopen's own text names what is missing: "libelf.so.1: cannot open shared object file", or "version `GLIBC_2.36' not found".
    const why = ((err as Error).message.split('\n')[0] ?? '').replace(/\.$/, '');
    const fix = /lib(elf|z)\.so/.test(why) ? 'install libelf1 and zlib1g' : BUILD_IT;
    throw new UserError(`cannot load the native addon ${path} (${why}): ${fix}.`);
  }
  loadedFrom = { path, native };
  loaded = { ...native, loadBlocker };
  return loaded;
}

/** Which addon this process runs and what it carries; loads it if needed. */
export function addonBuild(): AddonBuild {
  loadBinding();
  const { path, native } = loadedFrom!;
  const info = native.buildInfo();
  const origin = relative(packageRoot(), path).startsWith('prebuilds/') ? 'prebuilt' : 'source';
  // Beside a prebuilt: the exact libbpf source version linked in (scripts/prebuild.sh); libbpf says only v1.1.
  const exact = join(dirname(path), 'libbpf.version');
  const source = origin === 'prebuilt' && existsSync(exact) ? readFileSync(exact, 'utf8').trim() : '';
  return {
    path,
    origin,
    libbpf: source ? `${info.libbpf} (${source}, Debian's source)` : info.libbpf,
    bpfObjects: Object.entries(info.bpfObjects).map(([name, bytes]) => ({
      name,
      sha256: createHash('sha256').update(bytes).digest('hex'),
      bytes: bytes.length,
    })),
  };
}

function loadBlocker(): string | undefined {
  const status = readFileSync('/proc/self/status', 'utf8');
  if (!canLoadBpf(/^CapEff:\s*([0-9a-f]+)/m.exec(status)?.[1] ?? '0')) return NEEDS_PRIVILEGE;
  if (!existsSync('/sys/kernel/btf/vmlinux')) {
    return 'this kernel has no BTF (/sys/kernel/btf/vmlinux is missing): wstrace needs a kernel built with CONFIG_DEBUG_INFO_BTF=y.';
  }
  return undefined;
}
