import { mkdtempSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  flattenMib,
  mibDelta,
  netnsReader,
  parseMib,
  parseMibFiles,
  parseOpenFilesLimit,
  parseSockstat,
  parseSockstatLines,
  parseSysctls,
  readHostFacts,
  readProcessFds,
  SYSCTL_FILES,
  type ReadFiles,
  type SysctlTexts,
} from '../src/host/index.js';

const fixture = (name: string) => readFileSync(new URL(`./fixtures/host/${name}`, import.meta.url), 'utf8');
const netstat = fixture('netstat.txt');
const snmp = fixture('snmp.txt');
const sockstat = fixture('sockstat.txt');
const sockstat6 = fixture('sockstat6.txt');

const sysctlTexts: SysctlTexts = {
  somaxconn: '4096\n',
  tcpMaxSynBacklog: '2048\n',
  ipLocalPortRange: '32768\t60999\n',
  tcpTwReuse: '2\n',
  tcpMaxTwBuckets: '262144\n',
  tcpFinTimeout: '60\n',
  tcpSyncookies: '1\n',
  fileMax: '9223372036854775807\n',
  nrOpen: '1048576\n',
  fileNr: '52480\t0\t9223372036854775807\n',
};

describe('MIB parser (/proc/net/netstat, /proc/net/snmp)', () => {
  it('reads every table of netstat by name', () => {
    const mib = parseMib(netstat, 'netstat.txt');
    expect(Object.keys(mib)).toEqual(['TcpExt', 'IpExt', 'MPTcpExt']);
    expect(mib.TcpExt?.ListenOverflows).toBe(1523);
    expect(mib.TcpExt?.ListenDrops).toBe(1530);
    expect(mib.TcpExt?.TW).toBe(884121);
    expect(mib.TcpExt?.TCPTimeWaitOverflow).toBe(17);
    expect(mib.IpExt?.InOctets).toBe(987654321098);
  });

  it('merges netstat and snmp and flattens to nstat names', () => {
    const flat = flattenMib(parseMibFiles([netstat, snmp]));
    expect(flat.TcpExtListenOverflows).toBe(1523);
    expect(flat.TcpExtSyncookiesSent).toBe(212);
    expect(flat.TcpOutRsts).toBe(40211);
    expect(flat.TcpCurrEstab).toBe(51234);
    expect(flat.TcpMaxConn).toBe(-1);
    expect(flat.IcmpMsgInType3).toBeTypeOf('number');
    expect(flat.UdpLiteInDatagrams).toBe(0);
  });

  it('computes deltas, counting new counters from zero', () => {
    const before = { TcpOutRsts: 100, TcpExtListenOverflows: 5 };
    const after = { TcpOutRsts: 130, TcpExtListenOverflows: 5, TcpExtTCPAOGood: 2 };
    expect(mibDelta(before, after)).toEqual({ TcpOutRsts: 30, TcpExtListenOverflows: 0, TcpExtTCPAOGood: 2 });
  });

  it('rejects a value line shorter than its header', () => {
    const broken = 'Tcp: RtoAlgorithm RtoMin OutRsts InCsumErrors\nTcp: 1 200 7\n';
    expect(() => parseMib(broken, '/proc/net/snmp')).toThrow(
      '/proc/net/snmp: line 2 (Tcp) has 3 values for 4 names',
    );
  });

  it('rejects a header without its value line', () => {
    const lines = snmp.trimEnd().split('\n');
    expect(() => parseMib(lines.slice(0, -1).join('\n'), 'snmp')).toThrow(/\(UdpLite\) has names but no value line/);
  });

  it('rejects value lines that belong to another table', () => {
    expect(() => parseMib('Tcp: A B\nUdp: 1 2\n', 'snmp')).toThrow(
      'snmp: line 2 is table Udp but the names on line 1 are for Tcp',
    );
  });

  it('rejects values that are not integers', () => {
    expect(() => parseMib('Tcp: A B\nTcp: 1 x\n', 'snmp')).toThrow('snmp: line 2 (Tcp) has "x" for B, not an integer');
  });
});

describe('sockstat parser', () => {
  it('gives the typed view of sockstat and sockstat6', () => {
    const s = parseSockstat(sockstat, sockstat6);
    expect(s.socketsUsed).toBe(52011);
    expect(s.tcp).toEqual({ inuse: 51240, orphan: 12, tw: 18233, alloc: 51302, memPages: 40960 });
    expect(s.tcp6Inuse).toBe(7);
    expect(s.udp).toEqual({ inuse: 6, memPages: 3 });
    expect(s.udp6Inuse).toBe(2);
    expect(s.lines.FRAG6).toEqual({ inuse: 0, memory: 0 });
  });

  it('leaves the IPv6 counts undefined without sockstat6', () => {
    const s = parseSockstat(sockstat);
    expect(s.tcp6Inuse).toBeUndefined();
    expect(s.udp6Inuse).toBeUndefined();
  });

  it('names the missing field', () => {
    const noTw = sockstat.replace(' tw 18233', '');
    expect(() => parseSockstat(noTw)).toThrow('/proc/net/sockstat: no "tw" on the TCP line');
  });

  it('rejects a key without a value', () => {
    expect(() => parseSockstatLines('TCP: inuse 3 orphan\n', 'sockstat')).toThrow(
      'sockstat: line 1 (TCP) has a key without a value',
    );
  });
});

describe('sysctl parser', () => {
  it('parses single values, the port range, tcp_mem and file-nr', () => {
    const s = parseSysctls(sysctlTexts, '287901\t383868\t575802\n');
    expect(s.somaxconn).toBe(4096);
    expect(s.tcpMaxSynBacklog).toBe(2048);
    expect(s.ipLocalPortRange).toEqual({ low: 32768, high: 60999 });
    expect(s.tcpTwReuse).toBe(2);
    expect(s.tcpMaxTwBuckets).toBe(262144);
    expect(s.tcpMem).toEqual({ low: 287901, pressure: 383868, high: 575802 });
    expect(s.tcpFinTimeout).toBe(60);
    expect(s.tcpSyncookies).toBe(1);
    expect(s.fileMax).toBeGreaterThan(9e18);
    expect(s.nrOpen).toBe(1048576);
    expect(s.fileNr.allocated).toBe(52480);
    expect(s.fileNr.free).toBe(0);
  });

  it('leaves tcp_mem undefined when it was not readable', () => {
    expect(parseSysctls(sysctlTexts).tcpMem).toBeUndefined();
  });

  it('names the file whose text is wrong', () => {
    expect(() => parseSysctls({ ...sysctlTexts, ipLocalPortRange: '32768\n' })).toThrow(
      '/proc/sys/net/ipv4/ip_local_port_range: expected 2 integer(s), got "32768"',
    );
  });
});

describe('per-process fds', () => {
  const root = mkdtempSync(join(tmpdir(), 'wst-proc-'));
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it('reads the "Max open files" row, unlimited as Infinity', () => {
    expect(parseOpenFilesLimit(fixture('limits.txt'))).toEqual({ soft: 65536, hard: 524288 });
    const unlimited = 'Max open files            1024                 unlimited            files\n';
    expect(parseOpenFilesLimit(unlimited)).toEqual({ soft: 1024, hard: Infinity });
    expect(() => parseOpenFilesLimit('Max processes 1 1\n', 'limits')).toThrow('limits: no "Max open files" row');
  });

  it('counts fds of a process tree under a given /proc root', async () => {
    mkdirSync(join(root, '4242', 'fd'), { recursive: true });
    for (let fd = 0; fd < 7; fd++) writeFileSync(join(root, '4242', 'fd', String(fd)), '');
    writeFileSync(join(root, '4242', 'limits'), fixture('limits.txt'));
    expect(await readProcessFds(4242, root)).toEqual({ pid: 4242, open: 7, soft: 65536, hard: 524288 });
  });

  it('gives undefined for a process that is gone', async () => {
    expect(await readProcessFds(999_999, root)).toBeUndefined();
  });

  it('rejects a pid that is not a positive integer', async () => {
    await expect(readProcessFds(-1)).rejects.toThrow(TypeError);
  });

  it('agrees with /proc for this process', async () => {
    const facts = await readProcessFds(process.pid);
    const limits = parseOpenFilesLimit(readFileSync('/proc/self/limits', 'utf8'));
    expect(facts?.soft).toBe(limits.soft);
    // The listing itself opens one fd, so allow the count to differ by it.
    const listed = readdirSync(`/proc/${process.pid}/fd`).length;
    expect(Math.abs((facts?.open ?? 0) - listed)).toBeLessThanOrEqual(1);
  });
});

describe('readHostFacts on a fake reader', () => {
  const files = new Map<string, string>([
    ['/proc/net/netstat', netstat],
    ['/proc/net/snmp', snmp],
    ['/proc/net/sockstat', sockstat],
    ...Object.entries(SYSCTL_FILES).map(([key, path]) => [path, sysctlTexts[key as keyof SysctlTexts]] as const),
  ]);
  const fake = (map: Map<string, string>, log: string[][] = []): ReadFiles => {
    return async (paths) => {
      log.push(paths);
      return paths.map((p) => {
        const text = map.get(p);
        if (text !== undefined) return text;
        throw Object.assign(new Error(`cannot read ${p}: No such file or directory`), { code: 'ENOENT' });
      });
    };
  };

  it('reads everything required in one batch and tolerates missing optional files', async () => {
    const log: string[][] = [];
    const host = new Map([['/proc/sys/net/ipv4/tcp_mem', '10\t20\t30\n']]);
    const facts = await readHostFacts({ read: fake(files, log), readHost: fake(host) });
    expect(log[0]).toHaveLength(3 + Object.keys(SYSCTL_FILES).length);
    expect(facts.mib.TcpExt?.ListenOverflows).toBe(1523);
    expect(facts.mibFlat.TcpOutRsts).toBe(40211);
    expect(facts.sockstat.tcp.tw).toBe(18233);
    expect(facts.sockstat.tcp6Inuse).toBeUndefined();
    expect(facts.sysctls.somaxconn).toBe(4096);
    // tcp_mem lives only in the initial namespace: taken from the host reader.
    expect(facts.sysctls.tcpMem).toEqual({ low: 10, pressure: 20, high: 30 });
  });

  it('passes other read failures through', async () => {
    const broken: ReadFiles = async () => {
      const message = 'cannot enter network namespace /run/netns/x: Permission denied';
      throw Object.assign(new Error(message), { code: 'EACCES' });
    };
    await expect(readHostFacts({ read: broken })).rejects.toThrow('Permission denied');
  });

  it('netnsReader hands the namespace path and the paths to the binding', async () => {
    const calls: Array<[string, string[]]> = [];
    const binding = {
      readFilesInNetns: async (ns: string, paths: string[]) => {
        calls.push([ns, paths]);
        return paths.map((p) => files.get(p) ?? (p.endsWith('sockstat6') ? sockstat6 : '1\t2\t3\n'));
      },
    };
    const facts = await readHostFacts({ netns: '/run/netns/blue', binding });
    expect(calls.every(([ns]) => ns === '/run/netns/blue')).toBe(true);
    expect(facts.sockstat.tcp6Inuse).toBe(7);
    expect(await netnsReader(binding, '/proc/1/ns/net')(['/proc/net/snmp'])).toEqual([snmp]);
  });
});
