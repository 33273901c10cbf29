/**
 * The sysctls that cap connection counts. net.* are per network namespace and
 * must be read from inside it; fs.* are host-wide and read the same from any
 * namespace; net.ipv4.tcp_mem is host-wide too but exists only in the initial
 * namespace's /proc/sys, so it may be unknown when read from elsewhere.
 */

export interface PortRange {
  readonly low: number;
  readonly high: number;
}

/** net.ipv4.tcp_mem, in pages: below low no pressure; above high allocations fail. */
export interface TcpMem {
  readonly low: number;
  readonly pressure: number;
  readonly high: number;
}

/** fs.file-nr: file handles allocated, allocated but free, and the fs.file-max limit. */
export interface FileNr {
  readonly allocated: number;
  readonly free: number;
  readonly max: number;
}

export interface Sysctls {
  /** net.core.somaxconn: the cap on any listen() backlog. */
  readonly somaxconn: number;
  /** net.ipv4.tcp_max_syn_backlog: SYN queue size per listener. */
  readonly tcpMaxSynBacklog: number;
  /** net.ipv4.ip_local_port_range: ephemeral ports for outgoing connections. */
  readonly ipLocalPortRange: PortRange;
  /** net.ipv4.tcp_tw_reuse: 0 off, 1 on, 2 loopback only. */
  readonly tcpTwReuse: number;
  /** net.ipv4.tcp_max_tw_buckets: TIME_WAIT sockets beyond this are dropped (TCPTimeWaitOverflow). */
  readonly tcpMaxTwBuckets: number;
  /** net.ipv4.tcp_mem; undefined when not visible from the namespace read. */
  readonly tcpMem: TcpMem | undefined;
  /** net.ipv4.tcp_fin_timeout, seconds in FIN_WAIT2 (TIME_WAIT is a fixed 60 s). */
  readonly tcpFinTimeout: number;
  /** net.ipv4.tcp_syncookies: 0 off, 1 when the SYN queue overflows, 2 always. */
  readonly tcpSyncookies: number;
  /** fs.file-max: host-wide open-file limit (very large, even 2^63−1, means "no limit"). */
  readonly fileMax: number;
  /** fs.nr_open: the highest RLIMIT_NOFILE a process may set. */
  readonly nrOpen: number;
  readonly fileNr: FileNr;
}

/** Sysctl name → file, in the order the texts are handed to parseSysctls. */
export const SYSCTL_FILES = {
  somaxconn: '/proc/sys/net/core/somaxconn',
  tcpMaxSynBacklog: '/proc/sys/net/ipv4/tcp_max_syn_backlog',
  ipLocalPortRange: '/proc/sys/net/ipv4/ip_local_port_range',
  tcpTwReuse: '/proc/sys/net/ipv4/tcp_tw_reuse',
  tcpMaxTwBuckets: '/proc/sys/net/ipv4/tcp_max_tw_buckets',
  tcpFinTimeout: '/proc/sys/net/ipv4/tcp_fin_timeout',
  tcpSyncookies: '/proc/sys/net/ipv4/tcp_syncookies',
  fileMax: '/proc/sys/fs/file-max',
  nrOpen: '/proc/sys/fs/nr_open',
  fileNr: '/proc/sys/fs/file-nr',
} as const;

export const TCP_MEM_FILE = '/proc/sys/net/ipv4/tcp_mem';

export type SysctlKey = keyof typeof SYSCTL_FILES;
export type SysctlTexts = Record<SysctlKey, string>;

/** Integers of a sysctl file ("32768\t60999\n" → [32768, 60999]); throws on anything else. */
export function parseSysctlNumbers(text: string, path: string, count: number): number[] {
  const words = text.trim().split(/\s+/);
  if (words.length !== count || !words.every((w) => /^-?\d+$/.test(w))) {
    throw new Error(`${path}: expected ${count} integer(s), got "${text.trim()}"`);
  }
  return words.map(Number);
}

/** Builds the typed view from the texts of SYSCTL_FILES and, when readable, tcp_mem. */
export function parseSysctls(texts: SysctlTexts, tcpMem?: string): Sysctls {
  const one = (key: SysctlKey): number => parseSysctlNumbers(texts[key], SYSCTL_FILES[key], 1)[0] ?? 0;
  const [low = 0, high = 0] = parseSysctlNumbers(texts.ipLocalPortRange, SYSCTL_FILES.ipLocalPortRange, 2);
  const [allocated = 0, free = 0, max = 0] = parseSysctlNumbers(texts.fileNr, SYSCTL_FILES.fileNr, 3);
  let mem: TcpMem | undefined;
  if (tcpMem !== undefined) {
    const [memLow = 0, pressure = 0, memHigh = 0] = parseSysctlNumbers(tcpMem, TCP_MEM_FILE, 3);
    mem = { low: memLow, pressure, high: memHigh };
  }
  return {
    somaxconn: one('somaxconn'),
    tcpMaxSynBacklog: one('tcpMaxSynBacklog'),
    ipLocalPortRange: { low, high },
    tcpTwReuse: one('tcpTwReuse'),
    tcpMaxTwBuckets: one('tcpMaxTwBuckets'),
    tcpMem: mem,
    tcpFinTimeout: one('tcpFinTimeout'),
    tcpSyncookies: one('tcpSyncookies'),
    fileMax: one('fileMax'),
    nrOpen: one('nrOpen'),
    fileNr: { allocated, free, max },
  };
}
