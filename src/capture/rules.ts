/**
 * Capture rules, one per line, checked at agent start with line-precise
 * errors:
 *
 *   NAME: SIGNAL [port P] [above N/s [for T s]] capture [for D s]
 *   NAME: timewait_dest above P% capture [for D s]
 *
 *   resets-443: resets port 443 above 100/s for 2s capture for 10s
 *   overflow:   listen_overflow capture for 10s
 *   tw-dest:    timewait_dest above 80% capture for 10s
 *
 * SIGNAL is resets, reset_sent, reset_received, listen_overflow (also queue
 * full and SYN drops) or timewait. Without `above`, any matching event fires.
 * The capture is of the port the rule names, else the event's local port
 * (for timewait_dest: that destination's port and address).
 */
import { readFileSync } from 'node:fs';
import { isPort } from '../protocol/address.js';
import { UserError } from '../protocol/errors.js';
import type { TraceEvent } from '../kernel/index.js';
import type { CaptureTarget } from './filter.js';

export type RuleSignal = 'resets' | 'reset_sent' | 'reset_received' | 'listen_overflow' | 'timewait' | 'timewait_dest';

export interface Rule {
  readonly name: string;
  readonly line: number;
  readonly signal: RuleSignal;
  readonly port?: number;
  /** Events per second that must be exceeded ... */
  readonly ratePerSec?: number;
  /** ... in each of this many consecutive seconds. */
  readonly forSec: number;
  /** For timewait_dest: share of ip_local_port_range used toward one destination. */
  readonly percent?: number;
  readonly captureSec?: number;
}

const SIGNALS: readonly RuleSignal[] = ['resets', 'reset_sent', 'reset_received', 'listen_overflow', 'timewait', 'timewait_dest'];

function seconds(tok: string | undefined): number | undefined {
  const m = /^(\d+(?:\.\d+)?)s?$/.exec(tok ?? '');
  return m ? Number(m[1]) : undefined;
}

export function parseRules(text: string, file = 'rules'): Rule[] {
  const rules: Rule[] = [];
  const names = new Set<string>();
  text.split('\n').forEach((raw, i) => {
    const line = raw.replace(/#.*$/, '').trim();
    if (!line) return;
    const at = `${file}:${i + 1}`;
    const fail = (msg: string): never => {
      throw new UserError(`${at}: ${msg}`);
    };
    const m = /^([A-Za-z0-9_.-]+):\s*(.*)$/.exec(line);
    if (!m) fail('a rule starts with its name and a colon, like "resets-443: resets port 443 above 100/s for 2s capture for 10s".');
    const name = m![1]!;
    if (names.has(name)) fail(`rule "${name}" is defined twice.`);
    names.add(name);
    const toks = m![2]!.split(/\s+/).filter(Boolean);
    let k = 0;
    const signal = toks[k++] as RuleSignal;
    if (!SIGNALS.includes(signal)) fail(`"${toks[0] ?? ''}" is not a signal: use one of ${SIGNALS.join(', ')}.`);
    const rule: { -readonly [K in keyof Rule]: Rule[K] } = { name, line: i + 1, signal, forSec: 1 };
    let sawCapture = false;
    while (k < toks.length) {
      const t = toks[k++]!;
      if (t === 'port' && !sawCapture) {
        const p = Number(toks[k++]);
        if (!isPort(p)) fail(`"${toks[k - 1] ?? ''}" after "port" is not a port (1-65535).`);
        rule.port = p;
      } else if (t === 'above' && !sawCapture) {
        const v = toks[k++] ?? '';
        const rate = /^(\d+(?:\.\d+)?)\/s$/.exec(v);
        const pct = /^(\d+(?:\.\d+)?)%$/.exec(v);
        if (signal === 'timewait_dest') {
          if (!pct || Number(pct[1]) <= 0 || Number(pct[1]) > 100) fail(`timewait_dest takes "above P%" with P from 1 to 100, not "${v}".`);
          rule.percent = Number(pct![1]);
        } else {
          if (!rate) fail(`"${v}" after "above" is not a rate like 100/s.`);
          rule.ratePerSec = Number(rate![1]);
        }
      } else if (t === 'for' && !sawCapture) {
        const s = seconds(toks[k++]);
        if (s === undefined || s < 1 || s > 3600) fail(`"${toks[k - 1] ?? ''}" after "for" is not a number of seconds (1-3600).`);
        rule.forSec = Math.round(s!);
      } else if (t === 'capture' && !sawCapture) {
        sawCapture = true;
      } else if (t === 'for' && sawCapture) {
        const s = seconds(toks[k++]);
        if (s === undefined || s <= 0 || s > 3600) fail(`"${toks[k - 1] ?? ''}" after "capture for" is not a number of seconds (up to 3600).`);
        rule.captureSec = s!;
      } else {
        fail(`unexpected "${t}".`);
      }
    }
    if (!sawCapture) fail('a rule ends with "capture" (optionally "capture for 10s").');
    if (signal === 'timewait_dest' && rule.percent === undefined) fail('timewait_dest needs "above P%".');
    rules.push(rule);
  });
  return rules;
}

export function loadRules(path: string): Rule[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new UserError(`cannot read the rules file ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}.`);
  }
  return parseRules(text, path);
}

function matches(rule: Rule, ev: TraceEvent): boolean {
  const kindOk =
    rule.signal === 'resets'
      ? ev.kind === 'reset_sent' || ev.kind === 'reset_received'
      : rule.signal === 'listen_overflow'
        ? ev.kind === 'listen_overflow' || ev.kind === 'syn_drop' || ev.kind === 'accept_queue_full'
        : ev.kind === rule.signal;
  return kindOk && (rule.port === undefined || ev.lport === rule.port || ev.rport === rule.port);
}

export interface Firing {
  readonly rule: Rule;
  readonly target: CaptureTarget;
  readonly detail: string;
}

/**
 * Counts matching events per whole second and fires a rule when each of its
 * last `forSec` seconds was above its rate (or at once, with no rate). The
 * capture manager's cooldown keeps a storm to one capture.
 */
export class RuleEngine {
  private readonly buckets = new Map<string, Map<number, number>>();
  private readonly lastPort = new Map<string, number>();

  constructor(
    readonly rules: readonly Rule[],
    private readonly fire: (f: Firing) => void,
  ) {}

  onEvents(events: readonly TraceEvent[]): void {
    for (const rule of this.rules) {
      if (rule.signal === 'timewait_dest') continue;
      for (const ev of events) {
        if (!matches(rule, ev)) continue;
        const port = rule.port ?? ev.lport;
        if (rule.ratePerSec === undefined) {
          this.fire({ rule, target: { port }, detail: `${ev.kind} on port ${port}` });
          continue;
        }
        const sec = Math.floor(ev.timeMs / 1000);
        const b = this.buckets.get(rule.name) ?? new Map<number, number>();
        b.set(sec, (b.get(sec) ?? 0) + 1);
        this.buckets.set(rule.name, b);
        this.lastPort.set(rule.name, port);
      }
    }
  }

  /** Once a second: rate rules over whole seconds, and TIME_WAIT per destination. */
  tick(nowMs: number, timewait?: { groups: Array<{ raddr: string; rport: number; count: number }>; portRange: number }): void {
    const now = Math.floor(nowMs / 1000);
    for (const rule of this.rules) {
      if (rule.signal === 'timewait_dest') {
        if (!timewait || timewait.portRange <= 0) continue;
        for (const g of timewait.groups) {
          const pct = (100 * g.count) / timewait.portRange;
          if (pct > rule.percent!) {
            this.fire({
              rule,
              target: { port: g.rport, host: g.raddr },
              detail: `${g.count} TIME_WAIT sockets to ${g.raddr}:${g.rport} = ${pct.toFixed(0)}% of the port range`,
            });
          }
        }
        continue;
      }
      if (rule.ratePerSec === undefined) continue;
      const b = this.buckets.get(rule.name);
      if (!b) continue;
      // Only whole seconds count: the current one is still filling.
      let above = 0;
      for (let s = now - rule.forSec; s < now; s++) if ((b.get(s) ?? 0) > rule.ratePerSec) above++;
      for (const s of b.keys()) if (s < now - rule.forSec - 1) b.delete(s);
      if (above === rule.forSec) {
        const port = this.lastPort.get(rule.name)!;
        this.fire({ rule, target: { port }, detail: `more than ${rule.ratePerSec}/s for ${rule.forSec} s on port ${port}` });
        b.clear();
      }
    }
  }
}
