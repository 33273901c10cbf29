/** Which hooks are live, as the kernel layer reports them and the agent passes on. */
import type { Signal } from './kinds.js';
import { SIGNALS } from './table.js';

export interface HookStatus {
  /** Kernel hook point(s). */
  readonly hook: string;
  /** What it lets wstrace see. */
  readonly signal: Signal;
  /** raw_tp, fentry, fexit, kprobe or kretprobe; empty when blind. */
  readonly variant: string;
  readonly attached: boolean;
  /** Why not, when not attached: each variant tried and how it failed. */
  readonly error?: string;
  /**
   * Live through another signal's programs (hook and variant are theirs),
   * which see it on every path: its own variant, loaded but not attached.
   */
  readonly standsDown?: string;
}

/** What to say about blind signals, so nobody reads silence as zero. */
export function blindNotes(hooks: readonly HookStatus[]): string[] {
  const notes: string[] = [];
  for (const s of SIGNALS) {
    if (!('blind' in s)) continue;
    if (!hooks.some((h) => h.signal === s.name && h.attached)) notes.push(s.blind);
  }
  return notes;
}
