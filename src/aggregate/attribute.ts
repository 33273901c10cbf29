/**
 * SYN-stage listen drops without a SYN hook. The SYN is consumed, not
 * dropped, so no tracepoint sees it; only the namespace's MIB counters do.
 * ListenOverflows counts both stages of "accept queue full", so per interval
 *
 *   SYN-stage = ΔListenOverflows − Σ Δ(per-listener ACK-stage overflows)
 *
 * and that remainder is split evenly across the listeners seen full in the
 * interval (queue over its limit at either end, a full hit, an overflow, or a
 * full event). With no listener seen full it stays unattributed. The numbers
 * are marked attributed wherever they are shown: they are an inference.
 *
 * ListenDrops − ListenOverflows (SYN queue full, memory, bad checksums...) is
 * not about the accept queue; it is shown host-wide, not per listener.
 *
 * The MIB counts the whole namespace: an agent limited to some ports (--port)
 * does not see a full listener on another port, whose drops then land on the
 * traced listeners seen full, or unattributed. One more reason for the mark.
 */
import type { ListenerSample, Sample } from './sample.js';

/** A listener as events name it: events carry the listener's namespace and port. */
export function portKey(netns: number, port: number): string {
  return `${netns}|${port}`;
}

/**
 * The namespace the MIB counters were read in: the one the agent dumped live
 * sockets from. Counter-only listeners of other namespaces (an agent tracing
 * all of them) must not share that namespace's drops.
 */
function mibNetns(cur: Sample, prev: Sample): number | undefined {
  for (const s of [cur, prev]) for (const l of s.listeners.values()) if (l.live) return l.netns;
  return undefined;
}

function isFull(l: ListenerSample | undefined): boolean {
  return l !== undefined && l.queue > l.limit;
}

/** Fills cur.attributed / cur.unattributed, cumulative from prev. */
export function attribute(prev: Sample, cur: Sample, fullSeen: ReadonlySet<string>, exact: boolean): void {
  cur.attributed = new Map(prev.attributed);
  cur.unattributed = prev.unattributed;
  const before = prev.host.listenOverflows;
  const after = cur.host.listenOverflows;
  if (before === undefined || after === undefined) return;

  const ns = mibNetns(cur, prev);
  let ack = 0;
  let exactSyn = 0;
  const full: ListenerSample[] = [];
  for (const l of cur.listeners.values()) {
    if (l.netns !== ns) continue;
    const p = prev.listeners.get(l.key);
    const dAck = Math.max(0, l.overflows - (p?.overflows ?? 0));
    ack += dAck;
    exactSyn += Math.max(0, l.synDrops - (p?.synDrops ?? 0));
    if (isFull(l) || isFull(p) || dAck > 0 || l.fullHits > (p?.fullHits ?? 0) || fullSeen.has(portKey(l.netns, l.port))) {
      full.push(l);
    }
  }
  // With the SYN hook the per-listener counts are exact; what the MIB still
  // shows beyond them is left unattributed rather than guessed.
  const rest = Math.max(0, after - before - ack - (exact ? exactSyn : 0));
  if (exact || rest === 0) {
    cur.unattributed += rest;
    return;
  }
  if (full.length === 0) {
    cur.unattributed += rest;
    return;
  }
  // Whole drops: the remainder goes to the listeners that filled most often.
  full.sort((a, b) => b.fullHits - a.fullHits || a.key.localeCompare(b.key));
  const share = Math.floor(rest / full.length);
  let extra = rest - share * full.length;
  for (const l of full) {
    const n = share + (extra > 0 ? 1 : 0);
    if (extra > 0) extra--;
    cur.attributed.set(l.key, (cur.attributed.get(l.key) ?? 0) + n);
  }
}
