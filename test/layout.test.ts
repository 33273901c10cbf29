/** The TypeScript decoder's idea of the C structs equals the addon's sizeof/offsetof. */
import { describe, expect, it } from 'vitest';
import { loadBinding } from '../src/kernel/binding.js';
import {
  COUNTER_COUNT,
  COUNTER_INDEX,
  EVENT_LAYOUT,
  KIND_CODE,
  LISTENER_KEY_LAYOUT,
  LISTENER_VALUE_LAYOUT,
  MAX_CGROUPS,
  MAX_PORTS,
  NO_REASON,
  PROGRAM_HITS,
  RESET_KEY_LAYOUT,
  RESIDENCY_BUCKETS,
  RESIDENCY_LAYOUT,
  SUMMARY_KEY_LAYOUT,
  SUMMARY_ROWS,
  SUMMARY_VALUE_LAYOUT,
  SYN_CAUSES,
  TIMEWAIT_KEY_LAYOUT,
} from '../src/kernel/layout.js';

const native = loadBinding().layout();

it.each([
  ['event', EVENT_LAYOUT],
  ['listenerKey', LISTENER_KEY_LAYOUT],
  ['listenerValue', LISTENER_VALUE_LAYOUT],
  ['resetKey', RESET_KEY_LAYOUT],
  ['timewaitKey', TIMEWAIT_KEY_LAYOUT],
  ['residency', RESIDENCY_LAYOUT],
  ['summaryKey', SUMMARY_KEY_LAYOUT],
  ['summaryValue', SUMMARY_VALUE_LAYOUT],
] as const)('%s layout matches the C header', (name, ts) => {
  const { bucketCount, ...offsets } = native[name]!.offsets;
  const c = { size: native[name]!.size, offsets };
  if (bucketCount !== undefined) expect(bucketCount).toBe(RESIDENCY_BUCKETS);
  expect(ts.size).toBe(c.size);
  expect(ts.offsets).toEqual(Object.fromEntries(Object.entries(c.offsets).filter(([k]) => k in ts.offsets)));
  // Every C field the decoder could need is known to it (padding aside).
  expect(Object.keys(c.offsets).sort()).toEqual(Object.keys(ts.offsets).sort());
});

it('the enums the addon compiled are the signal table\'s', () => {
  expect(native.counters!.size).toBe(COUNTER_COUNT);
  expect(native.counters!.offsets).toEqual(COUNTER_INDEX);
  expect(native.kinds!.offsets).toEqual(KIND_CODE);
  expect(native.hits!.size).toBe(PROGRAM_HITS.length);
  expect(native.hits!.offsets).toEqual(Object.fromEntries(PROGRAM_HITS.map((h, i) => [h, i])));
  expect(native.causes!.offsets).toEqual(Object.fromEntries(SYN_CAUSES.map((c, i) => [`syn_drop.${c}`, i])));
  expect(native.constants!.offsets).toEqual({
    noReason: NO_REASON,
    maxPorts: MAX_PORTS,
    maxCgroups: MAX_CGROUPS,
    summaryRows: SUMMARY_ROWS,
  });
});

it('each map the decoder reads holds the struct it decodes', () => {
  // Keyed counts (resets, timewaits) and the per-CPU arrays hold one u64 each: decode.ts reads 8 bytes.
  const u64 = 8;
  const expected = {
    listeners: [LISTENER_KEY_LAYOUT.size, LISTENER_VALUE_LAYOUT.size],
    residency: [LISTENER_KEY_LAYOUT.size, RESIDENCY_LAYOUT.size],
    resets: [RESET_KEY_LAYOUT.size, u64],
    timewaits: [TIMEWAIT_KEY_LAYOUT.size, u64],
    totals: [4, u64],
    hits: [4, u64],
    // The two maps a drain takes turns with hold the rows decodeSummaries() reads.
    summary_a: [SUMMARY_KEY_LAYOUT.size, SUMMARY_VALUE_LAYOUT.size],
    summary_b: [SUMMARY_KEY_LAYOUT.size, SUMMARY_VALUE_LAYOUT.size],
  };
  const m = native.maps!.offsets;
  for (const [map, [key, value]] of Object.entries(expected)) {
    expect({ map, key: m[`${map}.key`], value: m[`${map}.value`] }).toEqual({ map, key, value });
  }
  expect(m['totals.entries']).toBe(COUNTER_COUNT);
  expect(m['hits.entries']).toBe(PROGRAM_HITS.length);
  expect([m['summary_a.entries'], m['summary_b.entries']]).toEqual([SUMMARY_ROWS, SUMMARY_ROWS]);
});

describe('addon argument checks', () => {
  const binding = loadBinding();
  const good = { ports: [], netns: 0, ringBytes: 4096, fullEventIntervalNs: 0, onBatch: () => {} };
  it.each([
    [undefined, /options must be an object/],
    [{ ...good, ports: 'x' }, /options\.ports must be an array/],
    [{ ...good, ports: [0] }, /options\.ports\[0\] must be an integer from 1 to 65535/],
    [{ ...good, ports: Array(17).fill(80) }, /at most 16 ports/],
    [{ ...good, netns: -1 }, /options\.netns must be a namespace inode/],
    [{ ...good, ringBytes: 5000 }, /options\.ringBytes must be a power of two/],
    [{ ...good, fullEventIntervalNs: -1 }, /options\.fullEventIntervalNs/],
    [{ ...good, onBatch: 1 }, /options\.onBatch must be a function/],
    [{ ...good, eventBudget: -1 }, /options\.eventBudget must be a whole number/],
    [{ ...good, eventBudget: 2.5 }, /options\.eventBudget must be a whole number/],
    [{ ...good, eventBudget: 2e9 }, /options\.eventBudget must be a whole number/],
  ])('open(%j) throws a TypeError naming the argument', (opts, message) => {
    expect(() => (binding.open as (o: unknown) => unknown)(opts)).toThrow(TypeError);
    expect(() => (binding.open as (o: unknown) => unknown)(opts)).toThrow(message);
  });

  it('enumNames reads the running kernel BTF, and wants a string', () => {
    expect(() => (binding.enumNames as (n: unknown) => unknown)(3)).toThrow(TypeError);
    const states = binding.enumNames('skb_drop_reason');
    expect(Object.values(states)).toContain('SKB_DROP_REASON_NOT_SPECIFIED');
  });
});
