// Kernel-matrix probe: loads each hook variant on its own, makes loopback
// traffic, and prints one JSON line per variant: loaded / attached / fired,
// and the error when not. Plain JavaScript on the built dist/ so it starts
// fast in a slow (emulated) guest. Run as root: node test/kernels/probe.mjs
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmdirSync, statSync } from 'node:fs';
import { release } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cgroup2Mount, openTracer } from '../../dist/kernel/index.js';

const here = dirname(fileURLToPath(import.meta.url));
const TRAFFIC = join(here, '..', 'helpers', 'traffic.py');
const SYN_STAGE = join(here, '..', 'helpers', 'syn_stage.py');
const CLOSES = join(here, '..', 'helpers', 'closes.py');

/** Rounds of closes.py's abort-mix for each reset_received variant. */
const ABORT_ROUNDS = 6;

/** Each variant, the programs whose hit counters prove it fired, and the traffic that makes it fire. */
const VARIANTS = [
  // listenerPeer: a listener's resets to stray ACKs name each ACK's source, not the listener's empty peer.
  { signal: 'reset_sent', variant: 'tp_btf', programs: ['wst_rst_sent_btf'], traffic: ['closed-port', 20, 7916], listenerPeer: true },
  { signal: 'reset_sent', variant: 'raw_tp', programs: ['wst_rst_sent'], traffic: ['closed-port', 20, 7901], listenerPeer: true },
  // exactAbort: tcp_reset() on data to a socket closed for reading is no reset received; the real ones around it are.
  { signal: 'reset_received', variant: 'tp_btf', programs: ['wst_rst_recv_btf'], traffic: ['closed-port', 20, 7917], exactAbort: true },
  { signal: 'reset_received', variant: 'raw_tp', programs: ['wst_rst_recv'], traffic: ['closed-port', 20, 7902], exactAbort: true },
  // exactTimewait: closes without a timewait socket (aborts on data, linger2 < 0, a full tcp_max_tw_buckets) count none.
  { signal: 'timewait', variant: 'tp_btf', programs: ['wst_timewait_btf'], traffic: ['timewait', 10, 7918], exactTimewait: true },
  { signal: 'timewait', variant: 'raw_tp', programs: ['wst_timewait'], traffic: ['timewait', 10, 7903], exactTimewait: true },
  { signal: 'accept_queue_full', variant: 'tp_btf', programs: ['wst_acceptq_btf'], traffic: ['full-queue', 7919, 1, 4, 0.5], count: 'acceptQueueFull' },
  { signal: 'accept_queue_full', variant: 'raw_tp', programs: ['wst_acceptq'], traffic: ['full-queue', 7904, 1, 4, 0.5], count: 'acceptQueueFull' },
  { signal: 'accept_queue_full', variant: 'fexit', programs: ['wst_queue_add_fexit'], traffic: ['full-queue', 7914, 1, 4, 0.5], count: 'acceptQueueFull' },
  { signal: 'accept_queue_full', variant: 'kprobe', programs: ['wst_queue_add_kprobe'], traffic: ['full-queue', 7915, 1, 4, 0.5], count: 'acceptQueueFull' },
  { signal: 'listen_overflow', variant: 'raw_tp', programs: ['wst_listen_ovf'], traffic: ['ack-overflow', 7905, 2, 2, 0.5], count: 'listenOverflow' },
  { signal: 'listen_overflow', variant: 'fexit', programs: ['wst_synrecv_fexit'], traffic: ['ack-overflow', 7906, 2, 2, 0.5], count: 'listenOverflow' },
  { signal: 'listen_overflow', variant: 'kprobe', programs: ['wst_synrecv_kprobe', 'wst_synrecv_kretprobe'], traffic: ['ack-overflow', 7907, 2, 2, 0.5], count: 'listenOverflow' },
  // The tracepoint route counts both stages (and SYN-ACK retransmits: the ACK-stage drops leave requests to resend).
  { signal: 'syn_drop', variant: 'tp_btf', programs: ['wst_syn_begin_btf', 'wst_syn_consumed_btf', 'wst_syn_consumed2_btf', 'wst_syn_freed_btf', 'wst_syn_freed2_btf', 'wst_synack_rtx_btf'], traffic: ['ack-overflow-resent', 7921, 2, 3, 5], script: SYN_STAGE, exact: true, bothStages: true },
  { signal: 'syn_drop', variant: 'raw_tp', programs: ['wst_syn_begin', 'wst_syn_consumed', 'wst_syn_consumed2', 'wst_syn_freed', 'wst_syn_freed2', 'wst_synack_rtx'], traffic: ['ack-overflow-resent', 7920, 2, 3, 5], script: SYN_STAGE, exact: true, bothStages: true },
  { signal: 'syn_drop', variant: 'fentry', programs: ['wst_conn_req_fentry', 'wst_conn_req_fexit'], traffic: ['full-queue', 7908, 1, 6, 0.5], exact: true },
  { signal: 'syn_drop', variant: 'kprobe', programs: ['wst_conn_req_kprobe', 'wst_conn_req_kretprobe'], traffic: ['full-queue', 7909, 1, 6, 0.5], exact: true },
  { signal: 'accept_residency', variant: 'fexit', programs: ['wst_accept_fexit'], traffic: ['timewait', 5, 7910], count: 'accepted' },
  { signal: 'accept_residency', variant: 'kretprobe', programs: ['wst_accept_kretprobe'], traffic: ['timewait', 5, 7911], count: 'accepted' },
  { signal: 'reset_no_socket', variant: 'fentry', programs: ['wst_send_reset_fentry'], traffic: ['closed-port', 20, 7912], listenerPeer: true },
  { signal: 'reset_no_socket', variant: 'kprobe', programs: ['wst_send_reset_kprobe'], traffic: ['closed-port', 20, 7913], listenerPeer: true },
];

function mib() {
  const out = {};
  for (const file of ['/proc/net/netstat', '/proc/net/snmp']) {
    const lines = readFileSync(file, 'utf8').trim().split('\n');
    for (let i = 0; i + 1 < lines.length; i += 2) {
      const names = lines[i].split(/\s+/);
      const values = lines[i + 1].split(/\s+/);
      const table = names[0].replace(':', '');
      for (let j = 1; j < names.length; j++) out[table + names[j]] = Number(values[j]);
    }
  }
  return out;
}

/*
 * Five rounds, each opening one tracer with one variant per signal and
 * making every kind of traffic once: opening a tracer is the slow part in an
 * emulated guest, so it is done once per round, not once per variant
 * (accept_queue_full has four variants, syn_drop five).
 */
const ROUNDS = [
  { reset_sent: 'tp_btf', reset_received: 'tp_btf', timewait: 'tp_btf', accept_queue_full: 'raw_tp', listen_overflow: 'raw_tp', syn_drop: 'fentry', accept_residency: 'fexit', reset_no_socket: 'fentry' },
  { reset_sent: 'raw_tp', reset_received: 'raw_tp', timewait: 'raw_tp', accept_queue_full: 'fexit', listen_overflow: 'fexit', syn_drop: 'kprobe', accept_residency: 'kretprobe', reset_no_socket: 'kprobe' },
  { accept_queue_full: 'kprobe', listen_overflow: 'kprobe', syn_drop: 'none', accept_residency: 'none', reset_no_socket: 'none' },
  { accept_queue_full: 'tp_btf', listen_overflow: 'none', syn_drop: 'raw_tp', accept_residency: 'none', reset_no_socket: 'none' },
  { listen_overflow: 'none', syn_drop: 'tp_btf', accept_residency: 'none', reset_no_socket: 'none' },
];

/*
 * The socket's cgroup on every kernel: the traffic runs in a cgroup made here
 * (on a cgroup2 mount made here when the guest has none), below a parent the
 * tracer keeps with --cgroup's filter (so the ancestor comparison runs, on
 * ancestors[] or, before 6.0, ancestor_ids[]). Each row's events must carry
 * that cgroup's id; resets from a process outside it, on OUTSIDER_PORT, must
 * not come at all.
 */
const OUTSIDER_PORT = 7999;

function probeCgroup() {
  let mount = cgroup2Mount();
  let mounted;
  if (!mount) {
    mounted = '/tmp/wst-probe-cgroup2';
    mkdirSync(mounted, { recursive: true });
    execFileSync('mount', ['-t', 'cgroup2', 'none', mounted]);
    mount = mounted;
  }
  const rel = `/wst-probe-${process.pid}`;
  const parent = `${mount.replace(/\/+$/, '')}${rel}`;
  const child = `${parent}/traffic`;
  mkdirSync(child, { recursive: true });
  return {
    filter: rel,
    id: statSync(child).ino,
    /** Runs traffic.py inside the cgroup: the shell joins it, then execs. */
    traffic(args, script = TRAFFIC) {
      execFileSync('sh', ['-c', 'echo $$ > "$0" && exec "$@"', `${child}/cgroup.procs`, 'python3', script, ...args.map(String)], {
        stdio: ['ignore', 'ignore', 'inherit'],
        timeout: 120_000,
      });
    },
    /**
     * Runs a closes.py mode inside the cgroup and in a network namespace of
     * its own (its sysctls and MIB counters are its own, even on the host):
     * its JSON line, with the namespace's inode.
     */
    closes(args) {
      const out = execFileSync(
        'sh',
        ['-c', 'echo $$ > "$0" && exec unshare -n sh -c \'ip link set lo up && exec "$@"\' sh "$@"', `${child}/cgroup.procs`, 'python3', CLOSES, ...args.map(String)],
        { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], timeout: 300_000 },
      );
      return JSON.parse(out.trim().split('\n').pop());
    },
    remove() {
      for (const dir of [child, parent]) {
        try {
          rmdirSync(dir);
        } catch {
          /* still busy: a leftover of a killed run */
        }
      }
      if (mounted) execFileSync('umount', [mounted]);
    },
  };
}

const cg = probeCgroup();

function portOf(v) {
  return ['full-queue', 'ack-overflow', 'ack-overflow-resent'].includes(v.traffic[0]) ? v.traffic[1] : v.traffic[2];
}

for (const force of ROUNDS) {
  const mine = VARIANTS.filter((v) => force[v.signal] === v.variant);
  const rows = mine.map((v) => ({ kernel: release(), signal: v.signal, variant: v.variant, loaded: false, attached: false, fired: false }));
  let tracer;
  try {
    tracer = await openTracer({ variants: force, countHits: true, resolveOwners: false, ports: [...mine.map(portOf), OUTSIDER_PORT], cgroups: [cg.filter] });
    const events = [];
    const closed = [];
    tracer.subscribe((batch) => events.push(...batch));
    mine.forEach((v, i) => {
      const row = rows[i];
      const hook = tracer.hooks.find((h) => h.signal === v.signal);
      row.attached = Boolean(hook?.attached && hook.variant === v.variant);
      row.loaded = row.attached || !/load failed/.test(hook?.error ?? '');
      if (!row.attached) row.error = hook ? hook.error : 'no such signal on this kernel';
    });
    for (const [i, v] of mine.entries()) {
      if (!rows[i].attached) continue;
      const before = mib();
      cg.traffic(v.traffic, v.script);
      const after = mib();
      if (v.exact) {
        rows[i].listenOverflows = after.TcpExtListenOverflows - before.TcpExtListenOverflows;
        if (v.bothStages) rows[i].synRetrans = after.TcpExtTCPSynRetrans - before.TcpExtTCPSynRetrans;
      }
      if (v.exactTimewait) closed[i] = cg.closes(['matrix-timewait', portOf(v)]);
      if (v.listenerPeer) closed[i] = cg.closes(['stray-acks', 5, portOf(v)]);
      if (v.exactAbort) closed[i] = cg.closes(['abort-mix', ABORT_ROUNDS, portOf(v)]);
    }
    // Resets from this process's own cgroup: the filter must keep them out.
    execFileSync('python3', [TRAFFIC, 'closed-port', 5, OUTSIDER_PORT], { stdio: ['ignore', 'ignore', 'inherit'], timeout: 120_000 });
    tracer.flush();
    const c = tracer.counters();
    const outsiders = events.filter((e) => e.lport === OUTSIDER_PORT || e.rport === OUTSIDER_PORT).length;
    mine.forEach((v, i) => {
      const row = rows[i];
      if (!row.attached) return;
      row.hits = Object.fromEntries(v.programs.map((p) => [p, c.hits[p] ?? 0]));
      row.fired = v.programs.every((p) => (c.hits[p] ?? 0) > 0);
      if (v.count) row.counted = c.totals[v.count];
      // Events of the variant's port whose socket the kernel knew (resets answering no socket have none).
      const port = portOf(v);
      const seen = events.filter((e) => (e.lport === port || e.rport === port) && e.cgroup !== undefined);
      const listener = c.listeners.find((l) => l.port === port);
      if (seen.length || listener) {
        row.cgroups = [...new Set([...seen.map((e) => e.cgroup), ...(listener ? [listener.cgroup] : [])])];
        row.cgroup = outsiders === 0 && row.cgroups.length === 1 && row.cgroups[0] === cg.id;
        if (outsiders) row.outsiders = outsiders;
      }
      if (v.exact) {
        // The per-listener SYN-stage count against the kernel's own counter.
        const l = c.listeners.find((x) => x.port === v.traffic[1]);
        row.synDrops = l ? l.synDrops.acceptQueueFull : 0;
        if (v.bothStages) {
          row.ackDrops = l ? l.overflows : 0;
          row.synackRetrans = l ? l.synackRetrans : 0;
        }
        const counted = row.synDrops + (row.ackDrops ?? 0);
        // The tracepoint route also counts SYN-ACK retransmits: the guest makes no others (no client SYN is refused here).
        row.exact = counted === row.listenOverflows && counted > 0 && (!v.bothStages || (row.synackRetrans === row.synRetrans && row.synRetrans > 0));
      }
      if (v.exactTimewait && closed[i]) {
        // TIME_WAITs in that namespace against the timewait sockets its kernel made, with closes that made
        // none in between: aborts on data and on linger, and an overflow of the buckets. The referee is
        // TcpExtTW + TWKilled where the kernel counts them as it makes them (6.1 on); 5.10 counts them when
        // one expires (none does within 60 s: they stay 0), so there the rise of sockstat's tw in the new
        // namespace, which a timewait socket ended early (a late answer resets one) would undercount.
        // A namespace's inode can be reused by the next: the port is matched too.
        const { mib, netns, tw } = closed[i];
        row.twMib = mib.TW + mib.TWKilled;
        row.twSockstat = tw;
        row.twMade = row.twMib > 0 ? row.twMib : tw;
        row.twCounted = c.timewaits.filter((t) => t.netns === netns && t.rport === portOf(v)).reduce((s, t) => s + t.count, 0);
        row.exact = row.twCounted === row.twMade && row.twMade > 0 && mib.TCPAbortOnData > 0 && mib.TCPTimeWaitOverflow > 0;
      }
      if (v.exactAbort && closed[i]) {
        // Per round two real resets reach servers on the port (CLOSE_WAIT, FIN_WAIT2) and two aborts on data
        // happen, one of them in tcp_reset() on the client: received on the port, never on a client's.
        const { mib, netns } = closed[i];
        const got = events.filter((e) => e.kind === 'reset_received' && e.netns === netns);
        row.resetsReceived = got.filter((e) => e.lport === portOf(v)).length;
        row.abortsTakenForResets = got.filter((e) => e.rport === portOf(v)).length;
        row.exact = mib.TCPAbortOnData === 2 * ABORT_ROUNDS && row.resetsReceived === 2 * ABORT_ROUNDS && row.abortsTakenForResets === 0;
      }
      if (v.listenerPeer && closed[i]) {
        // Each stray ACK's reset, from state LISTEN, names that ACK's source port and address.
        const { source_ports: sports, netns } = closed[i];
        const got = events.filter((e) => e.kind === 'reset_sent' && e.netns === netns && e.state === 'LISTEN' && e.lport === portOf(v));
        row.listenerResets = got.length;
        row.exact =
          got.length === sports.length &&
          got.every((e) => e.raddr === '127.0.0.1' && e.laddr === '127.0.0.1') &&
          [...got.map((e) => e.rport)].sort().join() === [...sports].sort().join();
      }
    });
  } catch (err) {
    for (const row of rows) row.error ??= String(err?.message ?? err);
  } finally {
    tracer?.close();
  }
  for (const row of rows) process.stdout.write(`WSTRACE_PROBE ${JSON.stringify(row)}\n`);
}
cg.remove();
