/**
 * How many rows each panel gets: the frame must stay one line shorter than
 * the terminal (else Ink clears and redraws the whole screen each time), and
 * listeners come first because they answer "why are connections refused".
 */
export interface LayoutInput {
  readonly width: number;
  readonly height: number;
  readonly sources: number;
  /** Rows each panel could use. */
  readonly listeners: number;
  readonly resets: number;
  readonly timewait: number;
  readonly capacity: number;
  readonly legend: boolean;
}

export interface Layout {
  /** Width to lay columns out in. */
  readonly width: number;
  /** More columns (netns, sent/received apart, tcp_mem thresholds). */
  readonly wide: boolean;
  /** Resets and TIME_WAIT next to each other. */
  readonly sideBySide: boolean;
  readonly hostLines: number;
  readonly listenerRows: number;
  readonly resetRows: number;
  readonly timewaitRows: number;
  readonly capacityRows: number;
  /** Blank lines before the footer. */
  readonly filler: number;
}

export const WIDE_AT = 120;
export const SIDE_BY_SIDE_AT = 160;
const MAX_HOST_LINES = 4;

export function layout(i: LayoutInput): Layout {
  const width = Math.max(40, i.width - 1);
  const wide = i.width >= WIDE_AT;
  const sideBySide = i.width >= SIDE_BY_SIDE_AT;
  const hostLines = i.sources <= 1 ? 0 : Math.min(i.sources, MAX_HOST_LINES);
  const capacityRows = Math.max(1, Math.min(i.capacity, MAX_HOST_LINES));
  const fixed =
    1 + // header
    hostLines +
    1 + // footer
    2 + (i.legend ? 1 : 0) + // listeners title and column titles
    (sideBySide ? 2 : 4) + // resets, TIME_WAIT
    2 + capacityRows;
  let spare = Math.max(0, i.height - 1 - fixed - (sideBySide ? 2 : 3));
  let listenerRows = 1;
  let resetRows = 1;
  let timewaitRows = 1;
  const give = (want: number, have: number, share: number): number => {
    const n = Math.max(0, Math.min(want - have, share, spare));
    spare -= n;
    return have + n;
  };
  listenerRows = give(i.listeners, listenerRows, Math.ceil(spare / 2));
  if (sideBySide) {
    const both = give(Math.max(i.resets, i.timewait), 1, spare);
    resetRows = both;
    timewaitRows = both;
  } else {
    resetRows = give(i.resets, resetRows, Math.ceil(spare / 2));
    timewaitRows = give(i.timewait, timewaitRows, spare);
    resetRows = give(i.resets, resetRows, spare);
  }
  listenerRows = give(i.listeners, listenerRows, spare);
  // What is left goes above the footer, which so stays on the last line.
  return { width, wide, sideBySide, hostLines, listenerRows, resetRows, timewaitRows, capacityRows, filler: spare };
}
