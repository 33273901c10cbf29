/** The last line: the filter being typed, a passing message, or the keys. */
import { Text } from 'ink';

type Props = {
  readonly editing?: string;
  readonly filter: string;
  readonly message?: string;
};

const KEYS = 'q quit  tab panel  ↑↓ select  s sort  / filter  w window  p pause  c capture  ? help';

export function Footer({ editing, filter, message }: Props) {
  if (editing !== undefined) {
    return (
      <Text wrap="truncate">
        <Text bold>filter (port or address): </Text>
        {editing}
        <Text inverse> </Text>
        <Text dimColor>  enter apply, esc cancel, empty clears</Text>
      </Text>
    );
  }
  return (
    <Text wrap="truncate">
      {filter ? <Text inverse>{` filter ${filter} `}</Text> : null}
      {filter ? ' ' : ''}
      {message ? <Text bold>{message}</Text> : <Text dimColor>{KEYS}</Text>}
    </Text>
  );
}
