/** The agent's side of captures: the manager, the rules, and the API shape of a capture. */
import { readFileSync } from 'node:fs';
import type { Capture, StartCaptureRequest } from '../generated/wstrace/v1/tracer.js';
import { UserError } from '../protocol/errors.js';
import type { Tracer } from '../kernel/index.js';
import { validateTarget } from '../capture/filter.js';
import { CaptureManager, type CaptureRecord, type ManagerOptions } from '../capture/manager.js';
import { loadRules, RuleEngine, type Rule } from '../capture/rules.js';

export interface CaptureOptions extends Omit<ManagerOptions, 'netnsPath' | 'counters' | 'prePorts'> {
  /** Rules file (see src/capture/rules.ts). */
  readonly rulesFile?: string;
}

export function captureToProto(r: CaptureRecord): Capture {
  return {
    id: r.id,
    state: r.state,
    file: r.file,
    filter: r.filter,
    trigger: r.trigger.kind,
    rule: r.trigger.rule ?? '',
    detail: r.trigger.detail,
    startedUnixMicros: r.startedMs * 1000,
    endedUnixMicros: (r.endedMs ?? 0) * 1000,
    endedBy: r.endedBy ?? '',
    bytes: r.bytes ?? 0,
    preSec: r.preSec,
    prePackets: r.prePackets ?? 0,
    error: r.error ?? '',
  };
}

function portRangeSize(): number {
  try {
    const [lo, hi] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    return lo && hi ? hi - lo + 1 : 0;
  } catch {
    return 0;
  }
}

export class AgentCaptures {
  readonly manager: CaptureManager;
  private readonly rules: Rule[];
  private engine: RuleEngine | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly tracer: Tracer,
    private readonly opts: CaptureOptions,
    tracedPorts: readonly number[],
  ) {
    this.rules = opts.rulesFile ? loadRules(opts.rulesFile) : [];
    const prePorts = [...new Set([...tracedPorts, ...this.rules.flatMap((r) => (r.port ? [r.port] : []))])];
    this.manager = new CaptureManager({
      ...opts,
      ...(tracer.netns ? { netnsPath: tracer.netns.path } : {}),
      prePorts,
      counters: () => tracer.counters().totals,
    });
  }

  async start(): Promise<void> {
    if ((this.opts.preSec ?? 0) > 0 || this.rules.length) await this.manager.start();
    if (!this.rules.length) return;
    this.engine = new RuleEngine(this.rules, (f) => {
      void this.manager.capture(
        f.target,
        { kind: 'rule', rule: f.rule.name, detail: f.detail },
        { ...(f.rule.captureSec !== undefined ? { durationSec: f.rule.captureSec } : {}), cooldownKey: `${f.rule.name}:${f.target.port}:${f.target.host ?? ''}` },
      );
    });
    this.tracer.subscribe((events) => this.engine?.onEvents(events));
    const needsTw = this.rules.some((r) => r.signal === 'timewait_dest');
    this.timer = setInterval(() => {
      if (!needsTw) return this.engine?.tick(Date.now());
      void this.tracer.dumpSockets().then((d) => this.engine?.tick(Date.now(), { groups: d.timewait, portRange: portRangeSize() }));
    }, 1000);
    this.timer.unref();
  }

  /** A capture asked for over the API. Bad input throws a UserError (INVALID_ARGUMENT). */
  async request(req: StartCaptureRequest): Promise<Capture> {
    const target = validateTarget({
      ...(req.port ? { port: req.port } : {}),
      ...(req.host ? { host: req.host } : {}),
      ...(req.direction ? { direction: req.direction } : {}),
    });
    if (req.durationSec > 3600) throw new UserError('a capture lasts at most 3600 seconds.');
    if (req.snaplen && (req.snaplen < 64 || req.snaplen > 65535)) throw new UserError('snaplen is from 64 to 65535 bytes.');
    const rec = await this.manager.capture(
      target,
      { kind: 'manual', detail: `asked for ${req.port ? `port ${req.port}` : ''}${req.host ? ` host ${req.host}` : ''}`.trim() },
      {
        ...(req.durationSec ? { durationSec: req.durationSec } : {}),
        ...(req.packets ? { packets: req.packets } : {}),
        ...(req.bytes ? { bytes: req.bytes } : {}),
        ...(req.snaplen ? { snaplen: req.snaplen } : {}),
        ...(req.preSec ? { preSec: req.preSec } : {}),
      },
    );
    return captureToProto(rec);
  }

  list(): Capture[] {
    return this.manager.list().map(captureToProto);
  }

  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.manager.close();
  }
}
