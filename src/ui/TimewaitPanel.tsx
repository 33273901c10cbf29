/** TIME_WAIT: how fast it is made, how many now, and which destination eats the local port range. */
import { Box } from 'ink';
import type { TimewaitDestRow, TimewaitView } from '../aggregate/index.js';
import { worst } from '../aggregate/levels.js';
import type { Column } from './columns.js';
import { compact, percent, perSec, workloadLabel } from './format.js';
import { Figure } from './Figure.js';
import { PanelTitle } from './PanelTitle.js';
import { Table } from './Table.js';

type Props = {
  readonly timewait: TimewaitView;
  readonly rows: readonly TimewaitDestRow[];
  readonly width: number;
  readonly height: number;
  readonly active: boolean;
  readonly selected: number;
  readonly multiHost: boolean;
  readonly sort: string;
  readonly filtered: boolean;
};

function columns(multiHost: boolean, named: boolean): Column<TimewaitDestRow>[] {
  return [
    ...(multiHost ? [{ title: 'HOST', width: 8, priority: 1, cell: (r) => r.host } satisfies Column<TimewaitDestRow>] : []),
    { title: 'DESTINATION', width: 21, flex: true, cell: (r) => r.endpoint },
    { title: 'NOW', width: 7, align: 'right', cell: (r) => compact(r.current) },
    {
      title: 'OF PORTS',
      width: 8,
      align: 'right',
      cell: (r) => (r.occupancy === undefined ? { text: 'inbound', dim: true } : { text: percent(r.occupancy), level: r.level }),
    },
    { title: 'MADE/s', width: 7, align: 'right', cell: (r) => perSec(r.createdPerSec) },
    // Whose connections they were, where the agent named them; only when some are.
    ...(named ? [{ title: 'FROM', width: 22, priority: 0, cell: (r) => workloadLabel(r.workload) || { text: '-', dim: true } } satisfies Column<TimewaitDestRow>] : []),
  ];
}

const REUSE: Record<string, string> = { off: 'off', on: 'on', loopback: 'loopback only', unknown: '?' };

export function TimewaitPanel({ timewait, rows, width, height, active, selected, multiHost, sort, filtered }: Props) {
  const hosts = timewait.hosts;
  const sum = (f: (h: (typeof hosts)[number]) => number | undefined) =>
    hosts.reduce<number | undefined>((n, h) => (f(h) === undefined ? n : (n ?? 0) + f(h)!), undefined);
  const made = sum((h) => h.createdPerSec);
  const overflow = sum((h) => h.overflowPerSec);
  const current = sum((h) => h.current) ?? 0;
  const one = hosts.length === 1 ? hosts[0] : undefined;
  return (
    <Box flexDirection="column">
      <PanelTitle name="TIME_WAIT" active={active}>
        <Figure label="made" value={`${perSec(made)}/s`} />
        <Figure label="now" value={compact(current)} level={worst(...hosts.map((h) => h.currentLevel))} />
        <Figure label="overflow" value={`${perSec(overflow)}/s`} level={worst(...hosts.map((h) => h.overflowLevel))} />
        {one?.portRange ? <Figure label="ports" value={`${one.portRange.low}-${one.portRange.high}`} /> : null}
        {one ? <Figure label="reuse" value={REUSE[one.twReuse] ?? one.twReuse} /> : null}
        {sort !== 'now' ? `sort: ${sort}` : ''}
      </PanelTitle>
      <Table
        columns={columns(multiHost, rows.some((r) => r.workload))}
        rows={rows}
        rowKey={(r) => r.key}
        width={width}
        height={height}
        active={active}
        selected={selected}
        empty={filtered ? 'no destination matches the filter' : 'no TIME_WAIT sockets'}
      />
    </Box>
  );
}
