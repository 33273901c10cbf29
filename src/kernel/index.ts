export { openTracer, Tracer, ALWAYS_BLIND, DEFAULT_RING_BYTES } from './tracer.js';
export type { TracerOptions, HookStatus, BatchListener } from './tracer.js';
export type { TraceEvent, Counters, Totals, ListenerCounter, ResetCounter, TimewaitCounter } from './decode.js';
export type { EventKind } from './names.js';
export { EVENT_KINDS } from './names.js';
export type { SocketDump, ListenerSocket, TimewaitGroup } from './binding.js';
export { UserError, NEEDS_PRIVILEGE } from './errors.js';
export { resolveNetns, type NetnsRef } from './netns.js';
