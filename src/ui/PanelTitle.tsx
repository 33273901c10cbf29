/** A panel's first line: its name (inverse when it has the keyboard), then its summary. */
import { Text } from 'ink';
import type { ReactNode } from 'react';

type Props = {
  readonly name: string;
  readonly active: boolean;
  readonly children?: ReactNode;
};

export function PanelTitle({ name, active, children }: Props) {
  return (
    <Text wrap="truncate">
      <Text bold inverse={active}>
        {active ? `▸${name}` : ` ${name}`}
      </Text>
      {children ? <Text>{'  '}{children}</Text> : null}
    </Text>
  );
}
