/** Numbers as a person reads them in a narrow column. */
import type { FdFigure, Workload } from '../aggregate/index.js';

/** A count or size: 950, 1.2k, 34k, 1.2M. */
export function compact(n: number): string {
  if (!Number.isFinite(n)) return '∞';
  const abs = Math.abs(n);
  if (abs < 1000) return String(Math.round(n));
  const units: Array<[number, string]> = [
    [1e9, 'G'],
    [1e6, 'M'],
    [1e3, 'k'],
  ];
  for (const [size, unit] of units) {
    if (abs >= size) {
      const v = n / size;
      return `${Math.abs(v) < 10 ? v.toFixed(1).replace(/\.0$/, '') : Math.round(v)}${unit}`;
    }
  }
  return String(n);
}

/** A rate per second: "-" unknown, "0", "0.3", "12", "1.2k". */
export function perSec(r: number | undefined): string {
  if (r === undefined) return '-';
  if (r === 0) return '0';
  if (r < 0.05) return '<.1';
  if (r < 10) return r.toFixed(1);
  return compact(r);
}

export function percent(f: number | undefined): string {
  if (f === undefined) return '-';
  const p = f * 100;
  if (p === 0) return '0%';
  if (p < 0.1) return '<.1%';
  if (p < 10) return `${p.toFixed(1)}%`;
  return `${Math.round(p)}%`;
}

export function fds(f: FdFigure): string {
  if (f.kind === 'n/a') return 'n/a';
  if (f.kind === 'unknown') return '-';
  return `${compact(f.open)}/${compact(f.limit)}`;
}

export function age(ms: number | undefined): string {
  if (ms === undefined) return '-';
  if (ms < 10_000) return `${(ms / 1000).toFixed(1)}s`;
  if (ms < 120_000) return `${Math.round(ms / 1000)}s`;
  return `${Math.round(ms / 60_000)}m`;
}

/** "python3[4242]", or "-" when no process was found (a socket of a process that is gone, or a kernel one). */
export function processName(comm: string, pid: number | undefined): string {
  if (pid === undefined) return comm || '-';
  return `${comm || '?'}[${pid}]`;
}

/**
 * A workload as short as it stays clear: `namespace/pod/container` for a
 * pod, the container's name or its id's first 12 digits (as docker shows
 * it) otherwise; empty when unknown.
 */
export function workloadLabel(w: Workload | undefined): string {
  if (!w) return '';
  const container = w.containerName ?? (w.container && /^[0-9a-f]{64}$/.test(w.container) ? w.container.slice(0, 12) : w.container);
  if (w.pod) return [w.namespace, w.pod, container].filter(Boolean).join('/');
  return container ?? '';
}

/** Every name a `/` filter may match in a workload: pod, namespace, container name and id. */
export function workloadText(w: Workload | undefined): string {
  return w ? [w.namespace, w.pod, w.containerName, w.container].filter(Boolean).join(' ') : '';
}
