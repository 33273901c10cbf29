/** A panel's rows as fixed-width columns, with the selected row marked when the panel is active. */
import { Box, Text } from 'ink';
import { cellOf, fit, fitColumns, GAP, marked, scrollStart, type Column } from './columns.js';
import { levelColor, useColor } from './theme.js';

type Props<T> = {
  readonly columns: readonly Column<T>[];
  readonly rows: readonly T[];
  readonly rowKey: (row: T) => string;
  readonly width: number;
  /** Rows available below the column titles. */
  readonly height: number;
  readonly active: boolean;
  readonly selected: number;
  /** Shown when there are no rows. */
  readonly empty: string;
};

export function Table<T>({ columns, rows, rowKey, width, height, active, selected, empty }: Props<T>) {
  const color = useColor();
  const cols = fitColumns(columns, width);
  const gap = ' '.repeat(GAP);
  const start = scrollStart(selected, rows.length, height);
  const shown = rows.slice(start, start + height);
  // Blank lines up to the panel's height keep every panel in its place as rows come and go.
  const blanks = Math.max(0, height - Math.max(1, shown.length));
  return (
    <Box flexDirection="column">
      <Text bold wrap="truncate">
        {' '}
        {cols.map((c) => fit(c.title, c.width, c.align)).join(gap)}
      </Text>
      {shown.length === 0 ? (
        <Text dimColor wrap="truncate">
          {' '}
          {empty}
        </Text>
      ) : (
        shown.map((row, i) => {
          const isSelected = active && start + i === selected;
          return (
            <Text key={rowKey(row)} inverse={isSelected} wrap="truncate">
              {isSelected ? '>' : ' '}
              {cols.map((c, k) => {
                const cell = cellOf(c.cell(row));
                return (
                  <Text key={c.title} color={levelColor(cell.level, color)} dimColor={cell.dim === true}>
                    {fit(marked(cell), c.width, c.align)}
                    {k < cols.length - 1 ? gap : ''}
                  </Text>
                );
              })}
            </Text>
          );
        })
      )}
      {Array.from({ length: blanks }, (_, i) => (
        <Text key={`blank-${i}`}> </Text>
      ))}
    </Box>
  );
}
