/**
 * The terminal side of `wstrace top`: the alternate screen (so quitting
 * gives back what was on the terminal before), Ink with redraws capped at
 * 10 fps, and a terminal restored however the process ends.
 */
import { render } from 'ink';
import type { WindowSec } from '../aggregate/index.js';
import { App } from './App.js';
import { ColorContext, colorFromEnv } from './theme.js';
import type { ViewSource } from './use-view.js';
import type { CaptureAsk } from './ui-state.js';

export interface ScreenOptions {
  readonly getView: ViewSource;
  readonly stdin: NodeJS.ReadStream;
  readonly stdout: NodeJS.WriteStream;
  readonly stderr?: NodeJS.WriteStream;
  readonly window?: WindowSec;
  readonly color?: boolean;
  /** Keys the caller handles itself (replay); returns the line to show, or undefined. */
  readonly onExtraKey?: (input: string) => string | undefined;
  /** What "now" is for the screen (replay: the recording's clock). */
  readonly now?: () => number;
  /** `c` on a row starts a capture through this; resolves with the line to show. */
  readonly onCapture?: (ask: CaptureAsk) => Promise<string>;
}

export interface Screen {
  /** Resolves when the person asks to quit (q, Ctrl-C). */
  readonly quit: Promise<void>;
  /** Unmounts, leaves the alternate screen, shows the cursor. Safe to call twice. */
  close(): Promise<void>;
}

const ENTER_ALT = '\x1b[?1049h\x1b[H';
const LEAVE_ALT = '\x1b[?1049l';
const SHOW_CURSOR = '\x1b[?25h';

export const MAX_FPS = 10;

export function openScreen(o: ScreenOptions): Screen {
  let requestQuit!: () => void;
  const quit = new Promise<void>((resolve) => (requestQuit = resolve));
  let restored = false;
  const restore = () => {
    if (restored) return;
    restored = true;
    o.stdout.write(LEAVE_ALT + SHOW_CURSOR);
  };
  // Whatever ends the process (an uncaught error too), the terminal comes back.
  process.once('exit', restore);
  o.stdout.write(ENTER_ALT);

  const instance = render(
    <ColorContext.Provider value={o.color ?? colorFromEnv()}>
      <App
        getView={o.getView}
        onQuit={() => requestQuit()}
        {...(o.onCapture ? { onCapture: o.onCapture } : {})}
        {...(o.onExtraKey ? { onExtraKey: o.onExtraKey } : {})}
        {...(o.now ? { now: o.now } : {})}
        initial={o.window ? { window: o.window } : {}}
      />
    </ColorContext.Provider>,
    {
      stdout: o.stdout,
      stdin: o.stdin,
      ...(o.stderr ? { stderr: o.stderr } : {}),
      exitOnCtrlC: false,
      maxFps: MAX_FPS,
    },
  );

  let closing: Promise<void> | undefined;
  return {
    quit,
    close() {
      closing ??= (async () => {
        instance.unmount();
        await instance.waitUntilExit().catch(() => undefined);
        restore();
        process.off('exit', restore);
      })();
      return closing;
    },
  };
}
