/**
 * Fixed-width columns: which fit the terminal, and each cell's text padded
 * to its width. Plain strings, so a row reads the same in a test, in tmux
 * and on a terminal without colour.
 */
import type { Level } from '../aggregate/index.js';

export interface Cell {
  readonly text: string;
  readonly level?: Level;
  /** Greyed: unknown or not applicable. */
  readonly dim?: boolean;
}

export interface Column<T> {
  readonly title: string;
  /** Width in cells; the one column with `flex` takes what the others leave (at least `width`). */
  readonly width: number;
  readonly flex?: boolean;
  readonly align?: 'left' | 'right';
  /** Narrow terminals drop columns with the lowest priority first; undefined never drops. */
  readonly priority?: number;
  readonly cell: (row: T) => Cell | string;
}

export const GAP = 1;
/** The selection marker before each row. */
export const GUTTER = 1;

/** Marks a crossed limit so it shows without colour too. */
export const OVER_MARK = '!';

export function cellOf(c: Cell | string): Cell {
  return typeof c === 'string' ? { text: c } : c;
}

export function marked(c: Cell): string {
  return c.level === 'over' && !c.text.endsWith(OVER_MARK) ? c.text + OVER_MARK : c.text;
}

/** Cuts the middle, not the end: an address keeps its port, a name its tail. */
export function fit(text: string, width: number, align: 'left' | 'right' = 'left'): string {
  const chars = [...text];
  if (chars.length > width) {
    if (width <= 1) return chars.slice(0, width).join('');
    const tail = Math.min(6, Math.floor((width - 1) / 2));
    return [...chars.slice(0, width - 1 - tail), '…', ...chars.slice(chars.length - tail)].join('');
  }
  const pad = ' '.repeat(width - chars.length);
  return align === 'right' ? pad + text : text + pad;
}

/** The columns that fit in `total` cells, with the flexible one widened to fill. */
export function fitColumns<T>(columns: readonly Column<T>[], total: number): Array<Column<T>> {
  let cols = [...columns];
  const need = (cs: readonly Column<T>[]) => GUTTER + cs.reduce((n, c) => n + c.width + GAP, 0);
  while (need(cols) > total) {
    const droppable = cols.filter((c) => c.priority !== undefined);
    if (droppable.length === 0) break;
    const lowest = droppable.reduce((a, b) => ((b.priority ?? 0) < (a.priority ?? 0) ? b : a));
    cols = cols.filter((c) => c !== lowest);
  }
  const spare = Math.max(0, total - need(cols));
  return cols.map((c) => (c.flex ? { ...c, width: c.width + spare } : c));
}

/** First row to show so the selected one stays in view. */
export function scrollStart(selected: number, rows: number, height: number): number {
  if (rows <= height) return 0;
  return Math.max(0, Math.min(selected - height + 1, rows - height));
}
