/** The TypeScript decoder's idea of the C structs equals the addon's sizeof/offsetof. */
import { expect, it } from 'vitest';
import { loadBinding } from '../src/kernel/binding.js';
import {
  COUNTER_COUNT,
  COUNTER_INDEX,
  EVENT_LAYOUT,
  KIND_CODE,
  LISTENER_KEY_LAYOUT,
  LISTENER_VALUE_LAYOUT,
  MAX_PORTS,
  NO_REASON,
  RESET_KEY_LAYOUT,
  TIMEWAIT_KEY_LAYOUT,
} from '../src/kernel/layout.js';

const native = loadBinding().layout();

it.each([
  ['event', EVENT_LAYOUT],
  ['listenerKey', LISTENER_KEY_LAYOUT],
  ['listenerValue', LISTENER_VALUE_LAYOUT],
  ['resetKey', RESET_KEY_LAYOUT],
  ['timewaitKey', TIMEWAIT_KEY_LAYOUT],
] as const)('%s layout matches the C header', (name, ts) => {
  const c = native[name]!;
  expect(ts.size).toBe(c.size);
  expect(ts.offsets).toEqual(Object.fromEntries(Object.entries(c.offsets).filter(([k]) => k in ts.offsets)));
  // Every C field the decoder could need is known to it (padding aside).
  expect(Object.keys(c.offsets).sort()).toEqual(Object.keys(ts.offsets).sort());
});

it('counter indexes and kind codes match the C enums', () => {
  expect(native.counters!.size).toBe(COUNTER_COUNT);
  expect(native.counters!.offsets).toEqual(COUNTER_INDEX);
  const { noReason, maxPorts, ...kinds } = native.kinds!.offsets;
  expect(kinds).toEqual(KIND_CODE);
  expect(noReason).toBe(NO_REASON);
  expect(maxPorts).toBe(MAX_PORTS);
});
