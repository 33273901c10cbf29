/**
 * Every signal wstrace sees, declared once. `npm run gen` (scripts/gen-signals.ts)
 * writes the C enums (bpf/signals.gen.h), the addon's hook list in attach
 * order (addon/hooks.gen.h), the proto's EventKind values and the README's
 * hook table from it; the TypeScript side reads it directly; test/signals.test.ts
 * and `npm run gen:check` fail when any copy drifts.
 *
 * Plain data: what the kernel side records and where it hooks. What a signal
 * means to a person (rates, rows, limits) lives with the code that shows it.
 */

/** A fact about the running kernel, read from its BTF before attaching. */
export interface KernelCheck {
  /** `enum`: `type` has an enumerator `member`; `struct`: `type` has a field `member`. */
  readonly btf: 'enum' | 'struct';
  readonly type: string;
  readonly member: string;
  /** What it means when the kernel lacks it: the start of an error message. */
  readonly absent: string;
}

export type VariantName = 'tp_btf' | 'raw_tp' | 'fentry' | 'fexit' | 'kprobe' | 'kretprobe';

/** One way to hook a signal. A signal's variants are tried in order, best first. */
export interface HookVariant {
  /** What `--variants`/the kernel matrix call it; programs of other attach types may ride along. */
  readonly variant: VariantName;
  /** `core`: programs of bpf/wstrace.bpf.c (loaded once); `ext`: of bpf/wstrace_ext.bpf.c (one instance per variant). */
  readonly object: 'core' | 'ext';
  /** The kernel hook point(s), as `wstrace info` shows them. */
  readonly hook: string;
  /** BPF program names to load and attach, all or none. */
  readonly programs: readonly string[];
  /** Hit counters (enum wst_prog) these programs bump: the kernel matrix's "fired". */
  readonly hits: readonly string[];
  /** Tried only on kernels that have this (a tp_btf variant also needs its tracepoint's BTF, btf_trace_HOOK). */
  readonly needs?: KernelCheck;
  /** Which kernels offer it, for the README; the loader does not read it (it just tries). */
  readonly kernels?: string;
  /** The loader sets this field of struct wst_switches when this variant is the live one. */
  readonly switchField?: string;
}

/** An index of the per-CPU totals array (enum wst_counter). */
export interface CounterSpec {
  /** The Totals field (camelCase); the C name is WST_CNT_ + its SNAKE_CASE. */
  readonly name: string;
  readonly doc: string;
}

/** Where an event's `reason` comes from. */
export type ReasonSource =
  /** An enum of the running kernel, named from its BTF (numbers differ between kernels). */
  | { readonly kernelEnum: string; readonly prefix: string }
  /** wstrace's own judgement: the index into these names (an enum written into the C header). */
  | { readonly causes: readonly string[]; readonly cEnum: string };

/** A signal that is also an event kind: a record on the ring and a value on the wire. */
export interface KindSpec {
  /** enum wst_kind (the ring record's `kind`): stable, never reused. */
  readonly code: number;
  /** The proto EventKind value (EVENT_KIND_ + the name in capitals): a contract, never renumbered. */
  readonly proto: number;
  /** The proto comment, line by line. */
  readonly protoDoc: readonly string[];
  readonly reason?: ReasonSource;
  /** The record's queue/backlog fields hold the listener's accept queue. */
  readonly listener?: boolean;
}

export interface SignalSpec {
  /** snake_case; what `--variants`, `wstrace info` and the kernel matrix call it. */
  readonly name: string;
  /** For people: the README's first column. */
  readonly label: string;
  /** One line: what it shows. */
  readonly description: string;
  readonly kind?: KindSpec;
  readonly counters: readonly CounterSpec[];
  /** Best first: the loader attaches the first that loads and attaches. */
  readonly hooks: readonly HookVariant[];
  /** Attached only on kernels that lack this (or when a variant is forced): elsewhere a portable hook covers it. */
  readonly onlyWithout?: KernelCheck;
  /** The loader sets this field of struct wst_switches when the signal is live, so other programs know. */
  readonly switchField?: string;
  /** Said when the signal has no live hook, so nobody reads silence as zero. */
  readonly blind?: string;
  /** The README's notes column. */
  readonly notes?: string;
}

const TCP_SEND_RESET_HAS_REASON: KernelCheck = {
  btf: 'struct',
  type: 'trace_event_raw_tcp_send_reset',
  member: 'reason',
  absent: 'tcp_send_reset does not fire for them before Linux 6.10',
};

/* syn_drop's tracepoint route (both variants): consume_skb says where a SYN ends only from 6.3. */
const SYN_ROUTE_NEEDS: KernelCheck = {
  btf: 'struct',
  type: 'trace_event_raw_consume_skb',
  member: 'location',
  absent: 'the tracepoint route needs Linux 6.3+ (consume_skb with a location)',
};

/** In attach order: the order `wstrace info` lists them in. */
export const SIGNALS = [
  {
    name: 'reset_sent',
    label: 'reset sent',
    description: 'This host sent a TCP reset.',
    kind: {
      code: 1,
      proto: 1,
      protoDoc: ['This host sent a TCP reset.'],
      reason: { kernelEnum: 'sk_rst_reason', prefix: 'SK_RST_REASON_' },
    },
    counters: [{ name: 'resetSent', doc: 'resets sent' }],
    hooks: [
      { variant: 'tp_btf', object: 'core', hook: 'tcp_send_reset', programs: ['wst_rst_sent_btf'], hits: ['wst_rst_sent_btf'] },
      { variant: 'raw_tp', object: 'core', hook: 'tcp_send_reset', programs: ['wst_rst_sent'], hits: ['wst_rst_sent'] },
    ],
    notes: 'tuple, state (for a reset sent on close: the state it left), kernel reset reason (6.10+)',
  },
  {
    name: 'reset_received',
    label: 'reset received',
    description: 'This host received a TCP reset.',
    kind: { code: 2, proto: 2, protoDoc: ['This host received a TCP reset.'] },
    counters: [{ name: 'resetReceived', doc: 'resets received' }],
    hooks: [
      { variant: 'tp_btf', object: 'core', hook: 'tcp_receive_reset', programs: ['wst_rst_recv_btf'], hits: ['wst_rst_recv_btf'] },
      { variant: 'raw_tp', object: 'core', hook: 'tcp_receive_reset', programs: ['wst_rst_recv'], hits: ['wst_rst_recv'] },
    ],
    notes:
      'tuple and state (the kernel gives no reason). Not the `tcp_reset()` the kernel runs on its own socket when data reaches it after it was closed for reading (an orphan in FIN_WAIT2: `TcpExtTCPAbortOnData`, told apart by that counter rising on the CPU just before): no reset arrived, and the reset the kernel sends for it counts as sent',
  },
  {
    name: 'timewait',
    label: 'TIME_WAIT made',
    description: 'A socket entered TIME_WAIT (this host closed first).',
    kind: { code: 3, proto: 3, protoDoc: ['A socket entered TIME_WAIT (this host closed first).'] },
    counters: [{ name: 'timewait', doc: 'TIME_WAIT entries' }],
    hooks: [
      { variant: 'tp_btf', object: 'core', hook: 'inet_sock_set_state', programs: ['wst_timewait_btf'], hits: ['wst_timewait_btf'] },
      { variant: 'raw_tp', object: 'core', hook: 'inet_sock_set_state', programs: ['wst_timewait'], hits: ['wst_timewait'] },
    ],
    notes:
      'FIN_WAIT2/CLOSING → CLOSE with a timewait socket of that connection in the established hash (`tcp_time_wait()` put it there just before): not the same move made by data on an orphan, `TCP_LINGER2` < 0, an orphan FIN_WAIT2 timer giving up, a full `tcp_max_tw_buckets` or a reset. Equals `TcpExtTW` + `TcpExtTWKilled` where the kernel counts them as it makes them (about 5.18 on; 5.10 counts at expiry: there the rise of sockstat `tw`). Where it counts them so, the total also takes their rise on the CPU of each such close: a timewait socket another CPU ended in the microseconds before its close looked, or one whose close no run saw (the kernel skipped it as nested), is in the total without a destination row or an event',
  },
  {
    name: 'accept_queue_full',
    label: 'accept queue full',
    description: "A listener's accept queue was seen full.",
    kind: {
      code: 4,
      proto: 4,
      protoDoc: ["A listener's accept queue was seen full (rate-limited per listener)."],
      listener: true,
    },
    counters: [
      { name: 'acceptQueueFull', doc: 'enqueues that left a queue full' },
      { name: 'acceptEnqueued', doc: 'children queued on any listener' },
    ],
    hooks: [
      {
        variant: 'tp_btf',
        object: 'core',
        hook: 'sk_data_ready',
        programs: ['wst_acceptq_btf'],
        hits: ['wst_acceptq_btf'],
        kernels: '6.3+',
      },
      {
        variant: 'raw_tp',
        object: 'core',
        hook: 'sk_data_ready',
        programs: ['wst_acceptq'],
        hits: ['wst_acceptq'],
        kernels: '6.3+',
      },
      {
        variant: 'fexit',
        object: 'ext',
        hook: 'inet_csk_complete_hashdance',
        programs: ['wst_queue_add_fexit'],
        hits: ['wst_queue_add_fexit'],
      },
      {
        variant: 'kprobe',
        object: 'ext',
        hook: 'inet_csk_complete_hashdance',
        programs: ['wst_queue_add_kprobe'],
        hits: ['wst_queue_add_kprobe'],
      },
    ],
    notes: 'depth and limit at each enqueue; one event per listener per 100 ms at most, every full sighting counted, peak kept',
  },
  {
    name: 'listen_overflow',
    label: 'ACK-stage listen overflow',
    description: 'The last ACK of a handshake was dropped because the accept queue was full.',
    kind: {
      code: 5,
      proto: 5,
      protoDoc: ['The last ACK of a handshake was dropped because the accept queue was full.'],
      reason: { kernelEnum: 'skb_drop_reason', prefix: 'SKB_DROP_REASON_' },
      listener: true,
    },
    counters: [{ name: 'listenOverflow', doc: 'ACK-stage drops, LISTEN_OVERFLOW' }],
    hooks: [
      {
        variant: 'raw_tp',
        object: 'core',
        hook: 'kfree_skb',
        programs: ['wst_listen_ovf'],
        hits: ['wst_listen_ovf'],
        needs: {
          btf: 'enum',
          type: 'skb_drop_reason',
          member: 'SKB_DROP_REASON_TCP_LISTEN_OVERFLOW',
          absent: 'this kernel has no SKB_DROP_REASON_TCP_LISTEN_OVERFLOW (Linux 6.15+)',
        },
        kernels: '6.15+',
      },
      {
        variant: 'fexit',
        object: 'ext',
        hook: 'tcp_v4/v6_syn_recv_sock',
        programs: ['wst_synrecv4_fexit', 'wst_synrecv6_fexit'],
        hits: ['wst_synrecv_fexit'],
      },
      {
        variant: 'kprobe',
        object: 'ext',
        hook: 'tcp_v4/v6_syn_recv_sock',
        programs: ['wst_synrecv4_kprobe', 'wst_synrecv4_kretprobe', 'wst_synrecv6_kprobe', 'wst_synrecv6_kretprobe'],
        hits: ['wst_synrecv_kprobe', 'wst_synrecv_kretprobe'],
      },
    ],
    notes:
      "raw_tp with `SKB_DROP_REASON_TCP_LISTEN_OVERFLOW`; the others when `tcp_v4/v6_syn_recv_sock` returns NULL on a full queue. Where syn_drop's tracepoint route is live it counts the ACK stage on every path (a SYN cookie's ACK too, which these miss), and these stand down: loaded but not attached, so no freed packet runs them; `info` then shows listen_overflow through syn_drop's route",
  },
  {
    name: 'syn_drop',
    label: 'SYN-stage listen drop',
    description: 'A SYN was dropped at a listener, with the cause wstrace judged.',
    kind: {
      code: 6,
      proto: 6,
      protoDoc: [
        'A SYN was dropped at a listener; `reason` is the cause wstrace judged',
        '(ACCEPT_QUEUE_FULL, SYN_QUEUE_FULL, UNPROVEN_PEER, OTHER). Rate-limited',
        'per listener; the exact counts are in Snapshot. Needs a richer hook.',
      ],
      reason: { causes: ['ACCEPT_QUEUE_FULL', 'SYN_QUEUE_FULL', 'UNPROVEN_PEER', 'OTHER'], cEnum: 'wst_syn_cause' },
      listener: true,
    },
    counters: [{ name: 'synDrop', doc: 'SYN-stage listen drops' }],
    hooks: [
      {
        variant: 'tp_btf',
        object: 'core',
        hook: 'netif_receive_skb, consume_skb, kfree_skb, tcp_retransmit_synack',
        programs: ['wst_syn_begin_btf', 'wst_syn_consumed_btf', 'wst_syn_consumed2_btf', 'wst_syn_freed_btf', 'wst_syn_freed2_btf', 'wst_synack_rtx_btf'],
        hits: ['wst_syn_begin_btf', 'wst_syn_consumed_btf', 'wst_syn_consumed2_btf', 'wst_syn_freed_btf', 'wst_syn_freed2_btf', 'wst_synack_rtx_btf'],
        needs: SYN_ROUTE_NEEDS,
        kernels: '6.3+',
        switchField: 'listen_drops_settled',
      },
      {
        variant: 'raw_tp',
        object: 'core',
        hook: 'netif_receive_skb, consume_skb, kfree_skb, tcp_retransmit_synack',
        programs: ['wst_syn_begin', 'wst_syn_consumed', 'wst_syn_consumed2', 'wst_syn_freed', 'wst_syn_freed2', 'wst_synack_rtx'],
        hits: ['wst_syn_begin', 'wst_syn_consumed', 'wst_syn_consumed2', 'wst_syn_freed', 'wst_syn_freed2', 'wst_synack_rtx'],
        needs: SYN_ROUTE_NEEDS,
        kernels: '6.3+',
        switchField: 'listen_drops_settled',
      },
      {
        variant: 'fentry',
        object: 'ext',
        hook: 'tcp_conn_request',
        programs: ['wst_conn_req_fentry', 'wst_conn_req_fexit'],
        hits: ['wst_conn_req_fentry', 'wst_conn_req_fexit'],
      },
      {
        variant: 'kprobe',
        object: 'ext',
        hook: 'tcp_conn_request',
        programs: ['wst_conn_req_kprobe', 'wst_conn_req_kretprobe'],
        hits: ['wst_conn_req_kprobe', 'wst_conn_req_kretprobe'],
      },
    ],
    blind:
      'SYN-stage listen drops: no hook on this kernel, so only the kernel counters ListenOverflows/ListenDrops count them (attributed to the listeners seen full)',
    notes:
      "exact per listener, with a cause: accept queue full, SYN queue full without cookies, unproven peer, other. raw_tp: where each SYN or ACK to a listener ends (consumed or freed), this CPU's ListenOverflows/ListenDrops/TCPReqQFullDrop/SyncookiesSent rise goes to that packet's listener (each end's program is attached twice, so an end whose run the kernel skips as nested in one is settled by the other, not left to the next listener); a rise found where a packet begins (netif_receive_skb) is none of the packets' to come, counted where the kernel ran no BPF program, and is set aside as the namespace's unattributed row, never another listener's; so ACK-stage drops on every path (cookie ACKs too) count here and the ACK-stage hooks stand down; also SYN cookies sent and SYN-ACK retransmits per listener. fentry/kprobe: the listener's drop counter before and after `tcp_conn_request`. With none, only the kernel's `ListenOverflows`/`ListenDrops` count it, and wstrace says so",
  },
  {
    name: 'accept_residency',
    label: 'accept-queue residency',
    description: 'Time from enqueue to accept(), per listener, as a log2 histogram.',
    counters: [{ name: 'accepted', doc: 'accepts timed for residency' }],
    hooks: [
      { variant: 'fexit', object: 'ext', hook: 'inet_csk_accept', programs: ['wst_accept_fexit'], hits: ['wst_accept_fexit'] },
      {
        variant: 'kretprobe',
        object: 'ext',
        hook: 'inet_csk_accept',
        programs: ['wst_accept_kretprobe'],
        hits: ['wst_accept_kretprobe'],
      },
    ],
    switchField: 'time_accepts',
    blind: 'accept-queue residency (enqueue to accept) needs fexit or kretprobe on inet_csk_accept',
    notes: 'time from enqueue to `accept()` per listener, as a log2 histogram in Snapshot: a slow event loop shows before anything overflows',
  },
  {
    name: 'reset_no_socket',
    label: 'reset to a closed port (no socket)',
    description: 'Resets sent with no socket, on kernels whose tcp_send_reset tracepoint misses them.',
    counters: [],
    hooks: [
      {
        variant: 'fentry',
        object: 'ext',
        hook: 'tcp_v4/v6_send_reset',
        programs: ['wst_send_reset4_fentry', 'wst_send_reset6_fentry'],
        hits: ['wst_send_reset_fentry'],
      },
      {
        variant: 'kprobe',
        object: 'ext',
        hook: 'tcp_v4/v6_send_reset',
        programs: ['wst_send_reset4_kprobe', 'wst_send_reset6_kprobe'],
        hits: ['wst_send_reset_kprobe'],
      },
    ],
    onlyWithout: TCP_SEND_RESET_HAS_REASON,
    switchField: 'reset_fn_hooked',
    notes: 'counted as reset sent; from 6.10 `tcp_send_reset` has them and these hooks stay off',
  },
] as const satisfies readonly SignalSpec[];

/** Counters that belong to no one signal: the pipeline's own health. */
export const PIPELINE_COUNTERS = [
  { name: 'ringDrops', doc: 'ring-buffer reserve failures' },
  { name: 'mapFull', doc: 'keyed counter not stored: map full' },
  { name: 'events', doc: 'records written to the ring' },
  { name: 'summarised', doc: 'events beyond the rate budget, added to a summary row instead of the ring' },
  { name: 'summaryLost', doc: 'events beyond the rate budget that found no summary row: the summary map was full' },
] as const satisfies readonly CounterSpec[];
