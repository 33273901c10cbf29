/** `?`: the keys, and how to read the marks. */
import { Box, Text } from 'ink';
import type { SourceView } from '../aggregate/index.js';

type Props = {
  readonly sources: readonly SourceView[];
};

const LINES: Array<[string, string]> = [
  ['q, Ctrl-C', 'quit'],
  ['tab, shift-tab', 'next, previous panel'],
  ['↑ ↓', 'select a row in the panel'],
  ['s', 'sort the panel by its next column'],
  ['/', 'filter by port, address, pod or container (enter applies, esc clears)'],
  ['w', 'rates over 1 s, 10 s or 60 s'],
  ['p', 'pause the screen (counting goes on)'],
  ['c', 'capture the selected listener, peer or port on its agent'],
];

const MARKS: Array<[string, string]> = [
  ['!', 'a limit crossed or something dropped (red)'],
  ['~', 'SYN-stage drops attributed from the MIB to the listeners seen full'],
  ['QUEUE 2/1', 'accept queue now / its limit, min(listen backlog, somaxconn)'],
  ['ACK/s, SYN/s', 'overflow drops at the handshake\'s last ACK (exact) and at the SYN'],
  ['OF PORTS', 'TIME_WAIT toward one destination / size of ip_local_port_range'],
  ['FDS', 'open fds / soft limit of the listening process (n/a for a remote agent)'],
];

export function HelpPanel({ sources }: Props) {
  const blind = sources.filter((s) => s.blind.length > 0);
  return (
    <Box flexDirection="column">
      <Text bold>keys</Text>
      {LINES.map(([k, v]) => (
        <Text key={k} wrap="truncate">
          {'  '}
          {k.padEnd(15)} {v}
        </Text>
      ))}
      <Text bold>marks</Text>
      {MARKS.map(([k, v]) => (
        <Text key={k} wrap="truncate">
          {'  '}
          {k.padEnd(15)} {v}
        </Text>
      ))}
      {blind.map((s) => (
        <Text key={s.id} wrap="truncate">
          {'  '}
          {s.label}: no hook for {s.blind.join(', ')}
        </Text>
      ))}
      <Text dimColor>any key closes this help</Text>
    </Box>
  );
}
