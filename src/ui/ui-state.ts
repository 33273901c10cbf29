/**
 * What the person at the keyboard chose: panel, selection, sort, filter,
 * window, pause, help. A plain reducer over key presses, so keys are tested
 * without a terminal; the rows each panel shows are derived here too.
 */
import {
  byTrouble,
  WINDOWS,
  type ListenerRow,
  type ResetPeerRow,
  type ResetPortRow,
  type TimewaitDestRow,
  type TopView,
  type WindowSec,
  type Workload,
} from '../aggregate/index.js';
import { workloadText } from './format.js';

export const PANELS = ['listeners', 'resets', 'timewait', 'capacity'] as const;
export type PanelId = (typeof PANELS)[number];

export const SORTS = {
  listeners: ['trouble', 'drops', 'queue', 'full', 'resets', 'port', 'host'],
  resets: ['rate', 'address'],
  timewait: ['now', 'made', 'address'],
  capacity: ['host'],
} as const satisfies Record<PanelId, readonly string[]>;

export interface UiState {
  readonly panel: PanelId;
  readonly selected: Readonly<Record<PanelId, number>>;
  readonly sort: Readonly<Record<PanelId, number>>;
  /** Applied filter: a port, or part of an address, pod, namespace or container. */
  readonly filter: string;
  /** The filter being typed after `/`, undefined when not typing. */
  readonly editing?: string;
  readonly paused: boolean;
  readonly help: boolean;
  readonly window: WindowSec;
  /** A passing message (where a capture goes, why it was refused), and until when. */
  readonly message?: { readonly text: string; readonly untilMs: number };
}

export const INITIAL_UI: UiState = {
  panel: 'listeners',
  selected: { listeners: 0, resets: 0, timewait: 0, capacity: 0 },
  sort: { listeners: 0, resets: 0, timewait: 0, capacity: 0 },
  filter: '',
  paused: false,
  help: false,
  window: 10,
};

/** The parts of Ink's Key this reducer reads. */
export interface KeyPress {
  readonly upArrow?: boolean;
  readonly downArrow?: boolean;
  readonly tab?: boolean;
  readonly shift?: boolean;
  readonly ctrl?: boolean;
  readonly return?: boolean;
  readonly escape?: boolean;
  readonly backspace?: boolean;
  readonly delete?: boolean;
}

export function sortName(ui: UiState, panel: PanelId = ui.panel): string {
  const names: readonly string[] = SORTS[panel];
  return names[ui.sort[panel] % names.length] ?? names[0]!;
}

/** The filter is a port, or part of an address, pod, namespace, container name or id. */
function matches(filter: string, addr: string, port: number | undefined, text: string, workload?: Workload): boolean {
  if (filter === '') return true;
  const f = filter.toLowerCase();
  if (/^\d+$/.test(f) && port !== undefined && port === Number(f)) return true;
  return addr.toLowerCase().includes(f) || text.toLowerCase().includes(f) || workloadText(workload).toLowerCase().includes(f);
}

const drops = (r: ListenerRow) => (r.ackDropsPerSec ?? 0) + (r.synDropsPerSec ?? 0);

export function listenerRowsOf(view: TopView, ui: UiState): ListenerRow[] {
  const rows = view.listeners.filter((r) => matches(ui.filter, r.addr, r.port, r.endpoint, r.workload));
  const order: Record<string, (a: ListenerRow, b: ListenerRow) => number> = {
    trouble: byTrouble,
    drops: (a, b) => drops(b) - drops(a) || byTrouble(a, b),
    queue: (a, b) => b.queue / Math.max(1, b.limit) - a.queue / Math.max(1, a.limit) || b.queue - a.queue || byTrouble(a, b),
    full: (a, b) => (b.fullPerSec ?? 0) - (a.fullPerSec ?? 0) || byTrouble(a, b),
    resets: (a, b) => (b.resetsPerSec ?? 0) - (a.resetsPerSec ?? 0) || byTrouble(a, b),
    port: (a, b) => a.port - b.port || a.host.localeCompare(b.host) || a.endpoint.localeCompare(b.endpoint),
    host: (a, b) => a.host.localeCompare(b.host) || byTrouble(a, b),
  };
  return rows.sort(order[sortName(ui, 'listeners')] ?? byTrouble);
}

export function peerRowsOf(view: TopView, ui: UiState): ResetPeerRow[] {
  const rows = view.resets.peers.filter((r) => matches(ui.filter, r.addr, undefined, r.addr, r.workload));
  if (sortName(ui, 'resets') === 'address') rows.sort((a, b) => a.addr.localeCompare(b.addr) || a.host.localeCompare(b.host));
  return rows;
}

export function portRowsOf(view: TopView, ui: UiState): ResetPortRow[] {
  const rows = view.resets.ports.filter((r) => matches(ui.filter, '', r.port, String(r.port ?? 'ephemeral')));
  if (sortName(ui, 'resets') === 'address') rows.sort((a, b) => (a.port ?? 1e6) - (b.port ?? 1e6) || a.host.localeCompare(b.host));
  return rows;
}

export function destinationRowsOf(view: TopView, ui: UiState): TimewaitDestRow[] {
  const rows = view.timewait.destinations.filter((r) => matches(ui.filter, r.addr, r.port, r.endpoint, r.workload));
  const s = sortName(ui, 'timewait');
  if (s === 'made') rows.sort((a, b) => (b.createdPerSec ?? 0) - (a.createdPerSec ?? 0) || b.current - a.current);
  if (s === 'address') rows.sort((a, b) => a.endpoint.localeCompare(b.endpoint) || a.host.localeCompare(b.host));
  return rows;
}

/** Where `c` captures: on which agent, which port and/or address. */
export interface CaptureAsk {
  readonly source: string;
  readonly label: string;
  readonly port?: number;
  readonly host?: string;
}

export interface Selectable {
  readonly key: string;
  readonly label: string;
  readonly capture?: CaptureAsk;
}

/** What ↑/↓ move over in a panel, and what `c` captures. */
export function selectable(view: TopView, ui: UiState, panel: PanelId): Selectable[] {
  switch (panel) {
    case 'listeners':
      return listenerRowsOf(view, ui).map((r) => {
        const label = `listener ${r.endpoint}`;
        return { key: r.key, label, capture: { source: r.source, label, port: r.port } };
      });
    case 'resets':
      return [
        ...peerRowsOf(view, ui).map((r) => {
          const label = `peer ${r.addr}`;
          return { key: r.key, label, capture: { source: r.source, label, host: r.addr } };
        }),
        ...portRowsOf(view, ui).map((r) => {
          const label = r.port === undefined ? 'ephemeral ports' : `port ${r.port}`;
          return { key: r.key, label, ...(r.port === undefined ? {} : { capture: { source: r.source, label, port: r.port } }) };
        }),
      ];
    case 'timewait':
      return destinationRowsOf(view, ui).map((r) => {
        const label = `destination ${r.endpoint}`;
        return { key: r.key, label, capture: { source: r.source, label, host: r.addr, ...(r.port !== undefined ? { port: r.port } : {}) } };
      });
    case 'capacity':
      return view.capacity.map((r) => ({ key: r.source, label: `host ${r.host}` }));
  }
}

export interface KeyResult {
  readonly ui: UiState;
  readonly quit?: boolean;
  /** `c` on a row: the capture to ask that row's agent for. */
  readonly capture?: CaptureAsk;
}

const MESSAGE_MS = 3000;

/** Applies one key press. `view` is what is on screen (selection bounds, what `c` names). */
export function onKey(ui: UiState, input: string, key: KeyPress, view: TopView, nowMs: number): KeyResult {
  if (key.ctrl && input === 'c') return { ui, quit: true };

  if (ui.editing !== undefined) {
    if (key.return) return { ui: { ...ui, filter: ui.editing.trim(), editing: undefined, selected: INITIAL_UI.selected } };
    if (key.escape) return { ui: { ...ui, editing: undefined } };
    if (key.backspace || key.delete) return { ui: { ...ui, editing: ui.editing.slice(0, -1) } };
    if (input && !key.ctrl && /^[0-9A-Za-z.:\-[\]%]+$/.test(input)) return { ui: { ...ui, editing: (ui.editing + input).slice(0, 64) } };
    return { ui };
  }

  if (ui.help) return input === 'q' ? { ui, quit: true } : { ui: { ...ui, help: false } };

  const count = selectable(view, ui, ui.panel).length;
  const sel = Math.min(ui.selected[ui.panel], Math.max(0, count - 1));
  const select = (n: number) => ({ ...ui, selected: { ...ui.selected, [ui.panel]: n } });
  const i = PANELS.indexOf(ui.panel);

  if (key.tab) {
    const next = PANELS[(i + (key.shift ? PANELS.length - 1 : 1)) % PANELS.length]!;
    return { ui: { ...ui, panel: next } };
  }
  if (key.upArrow) return { ui: select(Math.max(0, sel - 1)) };
  if (key.downArrow) return { ui: select(Math.min(Math.max(0, count - 1), sel + 1)) };
  if (key.escape && ui.filter) return { ui: { ...ui, filter: '' } };

  switch (input) {
    case 'q':
      return { ui, quit: true };
    case 's':
      return { ui: { ...ui, sort: { ...ui.sort, [ui.panel]: (ui.sort[ui.panel] + 1) % SORTS[ui.panel].length }, selected: INITIAL_UI.selected } };
    case '/':
      return { ui: { ...ui, editing: ui.filter } };
    case 'p':
      return { ui: { ...ui, paused: !ui.paused } };
    case '?':
    case 'h':
      return { ui: { ...ui, help: true } };
    case 'w': {
      const w = WINDOWS[(WINDOWS.indexOf(ui.window) + 1) % WINDOWS.length]!;
      return { ui: { ...ui, window: w } };
    }
    case 'c': {
      const target = ui.panel === 'capacity' ? undefined : selectable(view, ui, ui.panel)[sel];
      if (!target?.capture) {
        const text = target ? `capture: nothing to capture for ${target.label}` : 'capture: select a listener, peer or port first';
        return { ui: { ...ui, message: { text, untilMs: nowMs + MESSAGE_MS } } };
      }
      return { ui: { ...ui, message: { text: `capture: asking for ${target.label}…`, untilMs: nowMs + MESSAGE_MS } }, capture: target.capture };
    }
    default:
      return { ui };
  }
}
