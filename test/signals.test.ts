/**
 * The signal table (src/signals/table.ts) against every copy of it: the
 * generated C header, addon hook list, proto values and README table; the
 * proto enum as ts-proto generated it; the BPF programs and the counters and
 * hit counters they bump; the kernel matrix's probe. Any drift fails here.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { outputs, stale, tableProblems, hitEnum } from '../scripts/gen-signals.js';
import { EventKind as ProtoKind, type Event } from '../src/generated/wstrace/v1/tracer.js';
import { blindNotes, type HookStatus } from '../src/signals/hooks.js';
import { COUNTER_NAMES, KINDS, PROGRAM_HITS, SIGNAL_NAMES, kindOfCode, type Signal } from '../src/signals/kinds.js';
import { SIGNALS, type SignalSpec } from '../src/signals/table.js';
import { eventFromProto, kindFromProto, kindToProto, UnknownKinds } from '../src/protocol/convert.js';
import { ROOT } from './helpers/kernel.js';

const table: readonly SignalSpec[] = SIGNALS;
const read = (f: string) => readFileSync(join(ROOT, f), 'utf8');
const snake = (s: string) => s.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase();

describe('generated copies', () => {
  it('the table itself is consistent (unique names and numbers, causes a power of two)', () => {
    expect(tableProblems()).toEqual([]);
  });

  it('bpf/signals.gen.h, addon/hooks.gen.h, the proto values and the README table are what the table makes now', () => {
    // `npm run gen` rewrites them; a hand edit to any of them, or a table edit without `npm run gen`, lands here.
    expect(stale()).toEqual([]);
    expect(outputs().map((o) => o.file)).toEqual(['bpf/signals.gen.h', 'addon/hooks.gen.h', 'proto/wstrace/v1/tracer.proto', 'README.md']);
  });
});

describe('proto EventKind (src/generated, from the proto)', () => {
  const proto = Object.entries(ProtoKind).filter(([name, v]) => typeof v === 'number' && !['EVENT_KIND_UNSPECIFIED', 'UNRECOGNIZED'].includes(name));

  it('has every kind of the table, by name and number', () => {
    for (const k of KINDS) expect({ kind: k.name, proto: ProtoKind[`EVENT_KIND_${snake(k.name)}` as keyof typeof ProtoKind] }).toEqual({ kind: k.name, proto: k.proto });
  });

  it('has no value the table lacks', () => {
    expect(proto.map(([name, v]) => [name, v]).sort()).toEqual(KINDS.map((k) => [`EVENT_KIND_${snake(k.name)}`, k.proto]).sort());
  });

  it('converts each kind to the wire and back', () => {
    for (const k of KINDS) {
      expect(kindToProto(k.name)).toBe(k.proto);
      expect(kindFromProto(kindToProto(k.name))).toBe(k.name);
      expect(kindOfCode(k.code)?.name).toBe(k.name);
    }
  });
});

describe('an event of a kind this build does not know', () => {
  const event = (kind: number): Event => ({
    timeUnixMicros: 1,
    kind,
    family: 1,
    localAddr: '127.0.0.1',
    localPort: 80,
    remoteAddr: '127.0.0.1',
    remotePort: 5,
    netns: 1,
    state: '',
    reason: '',
    comm: '',
  });
  const unknownCode = Math.max(...KINDS.map((k) => k.proto)) + 1;

  it('is not renamed to another kind', () => {
    expect(eventFromProto(event(unknownCode))).toBeUndefined();
    expect(eventFromProto(event(kindToProto('timewait')))?.kind).toBe('timewait');
  });

  it('is counted, and the count says which code and what to do', () => {
    const unknown = new UnknownKinds();
    const known = unknown.convert([event(kindToProto('reset_sent')), event(unknownCode), event(unknownCode)]);
    expect(known.map((e) => e.kind)).toEqual(['reset_sent']);
    expect(unknown.count).toBe(2);
    expect(unknown.message()).toBe(`2 events of a kind this wstrace does not know (code ${unknownCode}): upgrade wstrace`);
    expect(new UnknownKinds().message()).toBeUndefined();
  });
});

describe('the BPF programs (bpf/*.bpf.c)', () => {
  const sources = { core: read('bpf/wstrace.bpf.c'), ext: read('bpf/wstrace_ext.bpf.c') };
  const all = `${sources.core}\n${sources.ext}\n${read('bpf/common.h')}`;
  /** Program names: the function after each SEC("kind/...") line. */
  const programs = (src: string) =>
    [...src.matchAll(/SEC\("(?:tp_btf|raw_tp|fentry|fexit|kprobe|kretprobe)\/[^"]+"\)\s*\nint\s+(?:BPF_\w+\()?\s*(\w+)/g)].map((m) => m[1]!);
  const used = (prefix: string) => new Set([...all.matchAll(new RegExp(`\\b(${prefix}\\w+)`, 'g'))].map((m) => m[1]!).filter((n) => !n.endsWith('__MAX')));

  it('each program is in exactly one hook variant of the table, in the object that holds it', () => {
    for (const object of ['core', 'ext'] as const) {
      const inTable = table.flatMap((s) => s.hooks.filter((h) => h.object === object).flatMap((h) => h.programs));
      expect({ object, programs: [...inTable].sort() }).toEqual({ object, programs: programs(sources[object]).sort() });
    }
  });

  it('bump exactly the hit counters the table declares (the kernel matrix reads them as "fired")', () => {
    expect([...used('WST_P_')].sort()).toEqual(PROGRAM_HITS.map(hitEnum).sort());
  });

  it('bump exactly the counters the table declares', () => {
    expect([...used('WST_CNT_')].sort()).toEqual(COUNTER_NAMES.map((c) => `WST_CNT_${snake(c)}`).sort());
  });

  it('emit every kind the table declares', () => {
    for (const k of KINDS) expect({ kind: k.name, emitted: all.includes(`e.kind = WST_${snake(k.name)};`) }).toEqual({ kind: k.name, emitted: true });
  });
});

it("the kernel matrix's probe names signals, variants and hit counters the table has", () => {
  const probe = read('test/kernels/probe.mjs');
  const rows = [...probe.matchAll(/\{ signal: '(\w+)', variant: '(\w+)', programs: \[([^\]]*)\]/g)].map((m) => ({
    signal: m[1]!,
    variant: m[2]!,
    hits: [...m[3]!.matchAll(/'(\w+)'/g)].map((x) => x[1]!),
  }));
  expect(rows.length).toBeGreaterThan(0);
  for (const row of rows) {
    const hook = table.find((s) => s.name === row.signal)?.hooks.find((h) => h.variant === row.variant);
    expect({ ...row, hits: hook?.hits }).toEqual(row);
  }
  // Every variant of the table is probed.
  const probed = new Set(rows.map((r) => `${r.signal}/${r.variant}`));
  expect(table.flatMap((s) => s.hooks.map((h) => `${s.name}/${h.variant}`)).filter((v) => !probed.has(v))).toEqual([]);
});

describe('blind notes', () => {
  const hook = (signal: Signal, attached: boolean): HookStatus => ({ hook: 'x', signal, variant: attached ? 'fexit' : '', attached });

  it('name each signal that has a note and no live hook, and no other', () => {
    const withNotes = table.filter((s) => s.blind).map((s) => s.name);
    expect(withNotes.length).toBeGreaterThan(0);
    const allBlind = blindNotes(SIGNAL_NAMES.map((s) => hook(s, false)));
    expect(allBlind).toEqual(table.filter((s) => s.blind).map((s) => s.blind));
    expect(blindNotes(SIGNAL_NAMES.map((s) => hook(s, true)))).toEqual([]);
    // A signal missing from the hook list (its hook was never tried) is blind too.
    expect(blindNotes([])).toEqual(allBlind);
  });
});
