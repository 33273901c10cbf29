/** One labelled number in a summary line, coloured and marked by its level. */
import { Text } from 'ink';
import type { Level } from '../aggregate/index.js';
import { OVER_MARK } from './columns.js';
import { levelColor, useColor } from './theme.js';

type Props = {
  readonly label: string;
  readonly value: string;
  readonly level?: Level;
};

export function Figure({ label, value, level }: Props) {
  const color = useColor();
  return (
    <Text>
      {label} <Text color={levelColor(level, color)} bold={level === 'over'}>{value}{level === 'over' ? OVER_MARK : ''}</Text>
      {'  '}
    </Text>
  );
}
