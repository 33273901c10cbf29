/**
 * The view model, recomputed on a timer (not per event: a flood of events
 * must not become a flood of frames). Paused, the last one stays.
 */
import { useEffect, useState } from 'react';
import type { TopView, WindowSec } from '../aggregate/index.js';

export type ViewSource = (window: WindowSec, nowMs: number) => TopView;

export function useView(getView: ViewSource, window: WindowSec, paused: boolean, refreshMs: number, now: () => number): TopView {
  const [view, setView] = useState(() => getView(window, now()));
  useEffect(() => {
    if (paused) return undefined;
    setView(getView(window, now()));
    const timer = setInterval(() => setView(getView(window, now())), refreshMs);
    return () => clearInterval(timer);
  }, [getView, window, paused, refreshMs, now]);
  return view;
}
