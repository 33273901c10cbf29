/**
 * Lookups over the signal table (table.ts): kinds by name, ring code and proto
 * value; counter and hit-counter indexes in the order the C enums number them.
 */
import { PIPELINE_COUNTERS, SIGNALS, type KindSpec, type ReasonSource } from './table.js';

type AnySignal = (typeof SIGNALS)[number];

/** Every signal wstrace can see: the event kinds and the hook-only ones (accept_residency, reset_no_socket). */
export type Signal = AnySignal['name'];

/** The signals that are records on the ring and values on the wire. */
export type EventKind = Extract<AnySignal, { readonly kind: KindSpec }>['name'];

/** A Totals field: the per-CPU totals array's index names (enum wst_counter). */
export type CounterName = AnySignal['counters'][number]['name'] | (typeof PIPELINE_COUNTERS)[number]['name'];

export interface Kind {
  readonly name: EventKind;
  readonly code: number;
  readonly proto: number;
  readonly reason?: ReasonSource;
  readonly listener: boolean;
}

const hasKind = (s: AnySignal): s is Extract<AnySignal, { readonly kind: KindSpec }> => 'kind' in s;

export const KINDS: readonly Kind[] = SIGNALS.filter(hasKind).map((s) => {
  const k: KindSpec = s.kind;
  return { name: s.name, code: k.code, proto: k.proto, listener: k.listener ?? false, ...(k.reason ? { reason: k.reason } : {}) };
});

export const SIGNAL_NAMES: readonly Signal[] = SIGNALS.map((s) => s.name);

const BY_NAME = new Map(KINDS.map((k) => [k.name, k]));
const BY_CODE = new Map(KINDS.map((k) => [k.code, k]));
const BY_PROTO = new Map(KINDS.map((k) => [k.proto, k]));

export function kind(name: EventKind): Kind {
  return BY_NAME.get(name)!;
}

/** The kind of a ring record's code; undefined for a code this build does not know. */
export function kindOfCode(code: number): Kind | undefined {
  return BY_CODE.get(code);
}

/** The kind of a proto EventKind value; undefined for one this build does not know. */
export function kindOfProto(value: number): Kind | undefined {
  return BY_PROTO.get(value);
}

export function isEventKind(name: string): name is EventKind {
  return BY_NAME.has(name as EventKind);
}

/** enum wst_counter, in order: each signal's counters in table order, then the pipeline's. */
export const COUNTER_NAMES: readonly CounterName[] = [
  ...SIGNALS.flatMap((s): readonly CounterName[] => s.counters.map((c) => c.name)),
  ...PIPELINE_COUNTERS.map((c) => c.name),
];

/** enum wst_prog, in order: the hit counters of every hook variant in table order. */
export const PROGRAM_HITS: readonly string[] = SIGNALS.flatMap((s) => s.hooks.flatMap((h): readonly string[] => h.hits));
