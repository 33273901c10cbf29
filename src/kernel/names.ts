/** Names for the numbers the kernel side records (kind codes are named by the signal table, src/signals/kinds.ts). */

/*
 * include/net/tcp_states.h. These numbers are user-visible (ss, inet_diag)
 * and have never been renumbered, unlike the reason enums.
 */
const TCP_STATES = [
  '',
  'ESTABLISHED',
  'SYN_SENT',
  'SYN_RECV',
  'FIN_WAIT1',
  'FIN_WAIT2',
  'TIME_WAIT',
  'CLOSE',
  'CLOSE_WAIT',
  'LAST_ACK',
  'LISTEN',
  'CLOSING',
  'NEW_SYN_RECV',
  'BOUND_INACTIVE',
];

export function tcpStateName(state: number): string | undefined {
  if (state === 0) return undefined;
  return TCP_STATES[state] ?? `STATE_${state}`;
}

/**
 * Reason names from the running kernel's BTF enums, prefix dropped so they
 * read as the kernel's own tracepoints print them (NO_SOCKET, TCP_LISTEN_OVERFLOW).
 */
export class ReasonNames {
  private readonly tables = new Map<string, Map<number, string>>();

  constructor(private readonly lookup: (enumName: string) => Record<number, string>) {}

  name(enumName: string, prefix: string, value: number): string {
    let table = this.tables.get(enumName);
    if (!table) {
      table = new Map();
      for (const [v, n] of Object.entries(this.lookup(enumName))) {
        table.set(Number(v), n.startsWith(prefix) ? n.slice(prefix.length) : n);
      }
      this.tables.set(enumName, table);
    }
    return table.get(value) ?? `${prefix}${value}`;
  }

  resetReason(value: number): string {
    return this.name('sk_rst_reason', 'SK_RST_REASON_', value);
  }

  dropReason(value: number): string {
    return this.name('skb_drop_reason', 'SKB_DROP_REASON_', value);
  }
}
