/** One screen of `wstrace top`, from the view model and the keyboard state. Renders only. */
import { Box, Text } from 'ink';
import type { TopView } from '../aggregate/index.js';
import { CapacityPanel } from './CapacityPanel.js';
import { Footer } from './Footer.js';
import { Header } from './Header.js';
import { HelpPanel } from './HelpPanel.js';
import { layout, WIDE_AT } from './layout.js';
import { ListenersPanel } from './ListenersPanel.js';
import { ResetsPanel } from './ResetsPanel.js';
import { TimewaitPanel } from './TimewaitPanel.js';
import { destinationRowsOf, listenerRowsOf, peerRowsOf, portRowsOf, selectable, sortName, type UiState } from './ui-state.js';

type Props = {
  readonly view: TopView;
  readonly ui: UiState;
  readonly width: number;
  readonly height: number;
  readonly nowMs: number;
};

export function TopScreen({ view, ui, width, height, nowMs }: Props) {
  const listeners = listenerRowsOf(view, ui);
  const peers = peerRowsOf(view, ui);
  const ports = portRowsOf(view, ui);
  const destinations = destinationRowsOf(view, ui);
  const multiHost = view.sources.length > 1;
  const legend = listeners.some((r) => r.synDropsAttributed && (r.synDropsPerSec ?? 0) > 0);
  const l = layout({
    width,
    height,
    sources: view.sources.length,
    listeners: listeners.length,
    resets: Math.max(view.resets.reasons.length, peers.length, ports.length),
    timewait: destinations.length,
    capacity: view.capacity.length,
    legend,
  });
  const sel = (panel: UiState['panel']) => Math.min(ui.selected[panel], Math.max(0, selectable(view, ui, panel).length - 1));
  const active = (panel: UiState['panel']) => ui.panel === panel;
  const message = ui.message && ui.message.untilMs > nowMs ? ui.message.text : undefined;

  const resets = (width: number) => (
    <ResetsPanel
      resets={view.resets}
      peers={peers}
      ports={ports}
      width={width}
      height={l.resetRows}
      active={active('resets')}
      selected={sel('resets')}
      multiHost={multiHost}
      wide={width >= WIDE_AT}
      sort={sortName(ui, 'resets')}
    />
  );
  const timewait = (width: number) => (
    <TimewaitPanel
      timewait={view.timewait}
      rows={destinations}
      width={width}
      height={l.timewaitRows}
      active={active('timewait')}
      selected={sel('timewait')}
      multiHost={multiHost}
      sort={sortName(ui, 'timewait')}
      filtered={ui.filter !== ''}
    />
  );
  const half = Math.floor(l.width / 2);

  return (
    <Box flexDirection="column" width={l.width}>
      <Header sources={view.sources} window={view.window} paused={ui.paused} wide={l.wide} maxHostLines={l.hostLines} />
      {ui.help ? (
        <HelpPanel sources={view.sources} />
      ) : (
        <>
          <ListenersPanel
            rows={listeners}
            width={l.width}
            height={l.listenerRows}
            active={active('listeners')}
            selected={sel('listeners')}
            multiHost={multiHost}
            wide={l.wide}
            sort={sortName(ui, 'listeners')}
            filtered={ui.filter !== ''}
          />
          {l.sideBySide ? (
            <Box flexDirection="row">
              <Box width={half}>{resets(half - 1)}</Box>
              <Box width={l.width - half}>{timewait(l.width - half)}</Box>
            </Box>
          ) : (
            <>
              {resets(l.width)}
              {timewait(l.width)}
            </>
          )}
          <CapacityPanel
            rows={view.capacity}
            width={l.width}
            height={l.capacityRows}
            active={active('capacity')}
            selected={sel('capacity')}
            multiHost={multiHost}
            wide={l.wide}
          />
        </>
      )}
      {ui.help
        ? null
        : Array.from({ length: l.filler }, (_, i) => (
            <Text key={`filler-${i}`}> </Text>
          ))}
      <Footer editing={ui.editing} filter={ui.filter} message={message} />
    </Box>
  );
}
