/**
 * /proc/net/sockstat and /proc/net/sockstat6: socket counts by protocol.
 *
 * Read in a namespace, `sockets used`, `inuse` and `tw` are that namespace's;
 * TCP `orphan`, `alloc` and `mem` are host-wide counters whatever namespace
 * reads them (the kernel keeps one of each), and `mem` is in pages, the unit
 * of net.ipv4.tcp_mem.
 */

export const SOCKSTAT_PATH = '/proc/net/sockstat';
export const SOCKSTAT6_PATH = '/proc/net/sockstat6';

/** Protocol line → key → value, e.g. raw.TCP.inuse, raw.FRAG6.memory. */
export type SockstatLines = Record<string, Record<string, number>>;

export interface Sockstat {
  /** Sockets of every kind in this namespace ("sockets: used"). */
  readonly socketsUsed: number;
  readonly tcp: {
    /** IPv4 TCP sockets of this namespace in the hash tables: listening, connecting, open, closing (not TIME_WAIT). */
    readonly inuse: number;
    /** Host-wide: closed by their process, still flushing or waiting for FIN. */
    readonly orphan: number;
    /** TIME_WAIT sockets in this namespace. */
    readonly tw: number;
    /** Host-wide: TCP sockets allocated, both families. */
    readonly alloc: number;
    /** Host-wide: pages of TCP buffer memory, compared against tcp_mem. */
    readonly memPages: number;
  };
  /** IPv6 TCP sockets in this namespace; undefined when the kernel has no IPv6. */
  readonly tcp6Inuse: number | undefined;
  readonly udp: { readonly inuse: number; readonly memPages: number };
  readonly udp6Inuse: number | undefined;
  /** Every line as parsed, for fields not named above. */
  readonly lines: SockstatLines;
}

/** Parses "PROTO: key value key value ..." lines. Throws on a key without a numeric value. */
export function parseSockstatLines(text: string, source = 'sockstat text'): SockstatLines {
  const out: SockstatLines = {};
  text.split('\n').forEach((line, i) => {
    if (line.trim() === '') return;
    const colon = line.indexOf(':');
    if (colon <= 0) throw new Error(`${source}: line ${i + 1} does not start with "PROTO:"`);
    const proto = line.slice(0, colon).trim();
    const words = line
      .slice(colon + 1)
      .trim()
      .split(/\s+/)
      .filter((w) => w !== '');
    if (words.length % 2 !== 0) throw new Error(`${source}: line ${i + 1} (${proto}) has a key without a value`);
    const fields: Record<string, number> = {};
    for (let k = 0; k < words.length; k += 2) {
      const key = words[k] ?? '';
      const raw = words[k + 1] ?? '';
      if (!/^-?\d+$/.test(raw)) {
        throw new Error(`${source}: line ${i + 1} (${proto}) has "${raw}" for ${key}, not an integer`);
      }
      fields[key] = Number(raw);
    }
    out[proto] = fields;
  });
  return out;
}

/** Builds the typed view from sockstat and (when the kernel has IPv6) sockstat6. */
export function parseSockstat(sockstat: string, sockstat6?: string): Sockstat {
  const lines = parseSockstatLines(sockstat, SOCKSTAT_PATH);
  if (sockstat6 !== undefined) Object.assign(lines, parseSockstatLines(sockstat6, SOCKSTAT6_PATH));
  const need = (proto: string, key: string, source = SOCKSTAT_PATH): number => {
    const value = lines[proto]?.[key];
    if (value === undefined) throw new Error(`${source}: no "${key}" on the ${proto} line`);
    return value;
  };
  return {
    socketsUsed: need('sockets', 'used'),
    tcp: {
      inuse: need('TCP', 'inuse'),
      orphan: need('TCP', 'orphan'),
      tw: need('TCP', 'tw'),
      alloc: need('TCP', 'alloc'),
      memPages: need('TCP', 'mem'),
    },
    tcp6Inuse: sockstat6 === undefined ? undefined : need('TCP6', 'inuse', SOCKSTAT6_PATH),
    udp: { inuse: need('UDP', 'inuse'), memPages: need('UDP', 'mem') },
    udp6Inuse: sockstat6 === undefined ? undefined : need('UDP6', 'inuse', SOCKSTAT6_PATH),
    lines,
  };
}
