/** The agent's side of captures: the manager, the rules, and the API shape of a capture. */
import { BinaryReader } from '@bufbuild/protobuf/wire';
import { StartCaptureRequest, type Capture } from '../generated/wstrace/v1/tracer.js';
import type { Tracer } from '../kernel/index.js';
import { filterExpression, validateTarget } from '../capture/filter.js';
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

/** StartCaptureRequest.bytes in proto/wstrace/v1/tracer.proto. */
const BYTES_FIELD = 6;

/**
 * StartCaptureRequest off the wire. The generated decoder throws on a
 * uint64 above 2^53, and grpc-js answers a throwing decoder with INTERNAL.
 * `bytes` is the request's only uint64: such a request is read without it,
 * as asking for more bytes than any ceiling, which the agent refuses as
 * INVALID_ARGUMENT like any other bound too high.
 */
export function decodeStartCapture(buf: Buffer): StartCaptureRequest {
  try {
    return StartCaptureRequest.decode(buf);
  } catch (err) {
    if (!/MAX_SAFE_INTEGER/.test((err as Error).message)) throw err;
  }
  const reader = new BinaryReader(buf);
  const rest: Uint8Array[] = [];
  while (reader.pos < reader.len) {
    const at = reader.pos;
    const [field, wireType] = reader.tag();
    reader.skip(wireType, field);
    if (field !== BYTES_FIELD) rest.push(buf.subarray(at, reader.pos));
  }
  return { ...StartCaptureRequest.decode(Buffer.concat(rest)), bytes: Number.POSITIVE_INFINITY };
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
    // A directory named by the operator is checked now, so a bad one stops the agent with one sentence.
    if (this.opts.dir !== undefined) this.manager.checkDir();
    if ((this.opts.preSec ?? 0) > 0 || this.rules.length) await this.manager.start();
    if (!this.rules.length) return;
    this.engine = new RuleEngine(this.rules, (f) => {
      this.manager
        .capture(
          f.target,
          { kind: 'rule', rule: f.rule.name, detail: f.detail },
          { ...(f.rule.captureSec !== undefined ? { durationSec: f.rule.captureSec } : {}), cooldownKey: `${f.rule.name}:${f.target.port}:${f.target.host ?? ''}` },
        )
        .catch(() => undefined); // a rule whose bounds pass no ceiling: nothing to capture, nothing to crash
    });
    this.tracer.subscribe((events) => this.engine?.onEvents(events));
    const needsTw = this.rules.some((r) => r.signal === 'timewait_dest');
    // The traced namespace's range, as the tracer read it (this process's own may differ).
    const range = this.tracer.ephemeralPorts;
    const portRange = range ? range[1] - range[0] + 1 : 0;
    this.timer = setInterval(() => {
      if (!needsTw) return this.engine?.tick(Date.now());
      void this.tracer.dumpSockets().then((d) => this.engine?.tick(Date.now(), { groups: d.timewait, portRange }));
    }, 1000);
    this.timer.unref();
  }

  /**
   * A capture asked for over the API. Bad input, and bounds above the
   * ceilings, throw a UserError (INVALID_ARGUMENT). The cooldown is per
   * caller and target; `caller` is empty for now: grpc-js gives a peer
   * address whose port changes with each connection (no identity to rate)
   * and no credentials for a unix-socket peer, so the target alone is the key.
   */
  async request(req: StartCaptureRequest, caller = ''): Promise<Capture> {
    const target = validateTarget({
      ...(req.port ? { port: req.port } : {}),
      ...(req.host ? { host: req.host } : {}),
      ...(req.direction ? { direction: req.direction } : {}),
    });
    const rec = await this.manager.capture(
      target,
      { kind: 'manual', detail: `asked for ${req.port ? `port ${req.port}` : ''}${req.host ? ` host ${req.host}` : ''}`.trim() },
      {
        ...(req.durationSec ? { durationSec: req.durationSec } : {}),
        ...(req.packets ? { packets: req.packets } : {}),
        ...(req.bytes ? { bytes: req.bytes } : {}),
        ...(req.snaplen ? { snaplen: req.snaplen } : {}),
        ...(req.preSec ? { preSec: req.preSec } : {}),
        cooldownKey: `manual|${caller}|${filterExpression(target)}`,
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
