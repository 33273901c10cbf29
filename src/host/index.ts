/**
 * Host facts in one call: MIB counters, sockstat and sysctls, all as seen
 * from one network namespace. Plain facts, no judgement: what is "too close
 * to the limit" is decided in src/aggregate.
 */
import { flattenMib, parseMibFiles, MIB_PATHS, type MibFlat, type MibTables } from './mib.js';
import { netnsReader, readCurrentNetns, readOptional, type NetnsFileReader, type ReadFiles } from './read.js';
import { parseSockstat, SOCKSTAT6_PATH, SOCKSTAT_PATH, type Sockstat } from './sockstat.js';
import { parseSysctls, SYSCTL_FILES, TCP_MEM_FILE, type SysctlKey, type Sysctls, type SysctlTexts } from './sysctl.js';

export * from './mib.js';
export * from './sockstat.js';
export * from './sysctl.js';
export * from './fds.js';
export * from './read.js';

export interface HostFacts {
  readonly mib: MibTables;
  /** The same counters under nstat names (TcpExtListenOverflows, TcpOutRsts). */
  readonly mibFlat: MibFlat;
  readonly sockstat: Sockstat;
  readonly sysctls: Sysctls;
}

export interface HostFactsOptions {
  /** Network-namespace file (/run/netns/NAME, /proc/PID/ns/net); default: this process's namespace. */
  readonly netns?: string;
  /** Overrides how files are read (tests); default: fs, or the addon when `netns` is set. */
  readonly read?: ReadFiles;
  /** Reader for this process's own namespace, where tcp_mem is looked up when `read` cannot see it. */
  readonly readHost?: ReadFiles;
  /** The addon, needed for `netns` without `read`. */
  readonly binding?: NetnsFileReader;
}

const SYSCTL_KEYS = Object.keys(SYSCTL_FILES) as SysctlKey[];

export async function readHostFacts(options: HostFactsOptions = {}): Promise<HostFacts> {
  let read = options.read ?? readCurrentNetns;
  if (!options.read && options.netns !== undefined) {
    if (!options.binding) throw new Error('readHostFacts: reading another network namespace needs the addon (options.binding)');
    read = netnsReader(options.binding, options.netns);
  }
  const readHost = options.readHost ?? readCurrentNetns;

  // One batch for everything every kernel has: one namespace switch.
  const required = [...MIB_PATHS, SOCKSTAT_PATH, ...SYSCTL_KEYS.map((k) => SYSCTL_FILES[k])];
  const texts = await read(required);
  const at = (i: number): string => texts[i] ?? '';
  const mibTexts = MIB_PATHS.map((_, i) => at(i));
  const sockstatText = at(MIB_PATHS.length);
  const sysctlBase = MIB_PATHS.length + 1;
  const sysctlTexts = Object.fromEntries(SYSCTL_KEYS.map((key, i) => [key, at(sysctlBase + i)])) as SysctlTexts;

  // Absent without IPv6, and tcp_mem is absent outside the initial namespace.
  const sockstat6 = await readOptional(read, SOCKSTAT6_PATH);
  let tcpMem = await readOptional(read, TCP_MEM_FILE);
  if (tcpMem === undefined && read !== readHost) tcpMem = await readOptional(readHost, TCP_MEM_FILE);

  const mib = parseMibFiles(mibTexts);
  return {
    mib,
    mibFlat: flattenMib(mib),
    sockstat: parseSockstat(sockstatText, sockstat6),
    sysctls: parseSysctls(sysctlTexts, tcpMem),
  };
}
export * from './cgroup-mount.js';
