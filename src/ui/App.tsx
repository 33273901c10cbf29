/** `wstrace top` on a terminal: keys in, one screen out. */
import { useInput } from 'ink';
import { useRef, useState } from 'react';
import { TopScreen } from './TopScreen.js';
import { INITIAL_UI, onKey, type CaptureAsk, type KeyPress, type UiState } from './ui-state.js';
import { useTerminalSize, type TerminalSize } from './use-terminal-size.js';
import { useView, type ViewSource } from './use-view.js';

type Props = {
  readonly getView: ViewSource;
  /** q, Ctrl-C: the caller unmounts and closes its sources. */
  readonly onQuit: () => void;
  /** Keys a caller handles itself (replay's clock); returns the line to show, or undefined to pass the key on. */
  readonly onExtraKey?: (input: string) => string | undefined;
  /** `c` on a row: start a capture; resolves with the line to show. */
  readonly onCapture?: (ask: CaptureAsk) => Promise<string>;
  readonly refreshMs?: number;
  readonly now?: () => number;
  /** Fixed size (tests); else the terminal's, following resizes. */
  readonly size?: TerminalSize;
  readonly initial?: Partial<UiState>;
};

const systemNow = () => Date.now();

/** A character of a multi-key chunk as the key it stands for. */
function keyOf(ch: string): KeyPress {
  if (ch === '\r' || ch === '\n') return { return: true };
  if (ch === '\x7f' || ch === '\b') return { backspace: true };
  if (ch === '\t') return { tab: true };
  return {};
}

export function App({ getView, onQuit, onCapture, onExtraKey, refreshMs = 500, now = systemNow, size, initial }: Props) {
  const [ui, setUi] = useState<UiState>({ ...INITIAL_UI, ...initial });
  const view = useView(getView, ui.window, ui.paused, refreshMs, now);
  const terminal = useTerminalSize();
  const { columns, rows } = size ?? terminal;

  // Keys can arrive several to a chunk, before React re-renders: each must see the last one's result.
  const current = useRef(ui);
  useInput((input, key) => {
    // Typed fast (or pasted), "/8080" comes as one input: take it a key at a time.
    const keys = input.length > 1 && !key.ctrl && !key.meta ? [...input] : [input];
    let next = current.current;
    for (const k of keys) {
      const extra = next.editing === undefined && !key.ctrl ? onExtraKey?.(k) : undefined;
      if (extra !== undefined) {
        next = { ...next, message: { text: extra, untilMs: now() + 4000 } };
        continue;
      }
      const r = onKey(next, k, keys.length > 1 ? keyOf(k) : key, view, now());
      if (r.quit) {
        onQuit();
        return;
      }
      if (r.capture) {
        const ask = r.capture;
        const say = (text: string) => {
          current.current = { ...current.current, message: { text, untilMs: now() + 6000 } };
          setUi(current.current);
        };
        if (!onCapture) say('capture: not available for this source');
        else onCapture(ask).then(say, (err: Error) => say(`capture: ${err.message}`));
      }
      next = r.ui;
    }
    current.current = next;
    setUi(next);
  });

  return <TopScreen view={view} ui={ui} width={columns} height={rows} nowMs={now()} />;
}
