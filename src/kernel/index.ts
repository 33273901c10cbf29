/** The kernel layer's public face: everything above src/kernel imports from here, never from its files. */
export { openTracer, Tracer, blindNotes, DEFAULT_RING_BYTES, DEFAULT_EVENT_BUDGET, resolveCgroups } from './tracer.js';
export { cgroup2Mount, CgroupSubtree, resolveCgroup, type CgroupRef } from './cgroup.js';
export type { TracerOptions, HookStatus, BatchListener, RawBatchListener, Signal } from './tracer.js';
export type { RawBatch, Side } from './raw.js';
export { parseAddress, type AddressBytes } from './addr.js';
export type {
  TraceEvent,
  EventSummary,
  Counters,
  Totals,
  ListenerCounter,
  ResetCounter,
  TimewaitCounter,
  ResidencyCounter,
  SynDrops,
} from './decode.js';
export type { EventKind } from '../signals/event.js';
export { EVENT_KINDS } from '../signals/event.js';
export type { SocketDump, ListenerSocket, TimewaitGroup, Binding, AddonBuild } from './binding.js';
export { addonBuild, loadBinding, packageRoot } from './binding.js';
/** Bytes of one ring record: a ring's capacity in events, for estimates of how full it is. */
export { EVENT_LAYOUT } from './layout.js';
export { SocketOwners, type Owner } from './owners.js';
export { NEEDS_PRIVILEGE } from './errors.js';
export { netnsPath, NetnsError, resolveNetns, ownNetnsInode, type NetnsProblem, type NetnsRef } from './netns.js';
