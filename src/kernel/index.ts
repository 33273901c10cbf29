export { openTracer, Tracer, blindNotes, DEFAULT_RING_BYTES } from './tracer.js';
export type { TracerOptions, HookStatus, BatchListener, Signal } from './tracer.js';
export type {
  TraceEvent,
  Counters,
  Totals,
  ListenerCounter,
  ResetCounter,
  TimewaitCounter,
  ResidencyCounter,
  SynDrops,
} from './decode.js';
export type { EventKind } from './names.js';
export { EVENT_KINDS } from './names.js';
export type { SocketDump, ListenerSocket, TimewaitGroup } from './binding.js';
export { UserError, NEEDS_PRIVILEGE } from './errors.js';
export { resolveNetns, type NetnsRef } from './netns.js';
