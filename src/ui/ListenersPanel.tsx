/** Listeners: which one is full, how full, what it drops, who owns it. */
import { Box, Text } from 'ink';
import type { ListenerRow } from '../aggregate/index.js';
import type { Column } from './columns.js';
import { compact, fds, perSec, processName, workloadLabel } from './format.js';
import { PanelTitle } from './PanelTitle.js';
import { Table } from './Table.js';

type Props = {
  readonly rows: readonly ListenerRow[];
  readonly width: number;
  readonly height: number;
  readonly active: boolean;
  readonly selected: number;
  readonly multiHost: boolean;
  readonly wide: boolean;
  readonly sort: string;
  readonly filtered: boolean;
};

/** Marks SYN-stage numbers inferred from the MIB rather than counted per listener. */
export const ATTRIBUTED_MARK = '~';

/** Queue depths stay exact up to somaxconn's usual range (4096, 65535): "4096/4096" not "4.1k/4.1k". */
const depth = (n: number) => (n < 100_000 ? String(n) : compact(n));

/** Pod or container of the listening socket; a column only where some listener has one (a host without containers keeps its width). */
const WORKLOAD: Column<ListenerRow> = { title: 'POD/CONTAINER', width: 22, priority: 3.5, cell: (r) => workloadLabel(r.workload) || { text: '-', dim: true } };

function columns(multiHost: boolean, wide: boolean, workloads: boolean): Column<ListenerRow>[] {
  const cols: Column<ListenerRow>[] = [];
  if (multiHost) cols.push({ title: 'HOST', width: 8, cell: (r) => r.host });
  cols.push(
    { title: 'ADDRESS:PORT', width: 14, flex: true, cell: (r) => r.endpoint },
    { title: 'PROCESS', width: 14, priority: 5, cell: (r) => (r.live ? processName(r.comm, r.pid) : { text: 'closed', dim: true }) },
    ...(workloads ? [WORKLOAD] : []),
    {
      title: 'QUEUE',
      width: 10,
      align: 'right',
      cell: (r) => (r.live ? { text: `${depth(r.queue)}/${depth(r.limit)}`, level: r.queueLevel } : { text: `-/${depth(r.limit)}`, dim: true }),
    },
    { title: 'PEAK', width: 5, align: 'right', priority: 2, cell: (r) => ({ text: depth(r.peak), level: r.peakLevel }) },
    {
      title: 'FULL/s',
      width: 6,
      align: 'right',
      priority: 1,
      cell: (r) => ({ text: perSec(r.fullPerSec), level: r.fullPerSec ? 'warn' : 'ok' }),
    },
    {
      title: 'ACK/s',
      width: 5,
      align: 'right',
      cell: (r) => ({ text: perSec(r.ackDropsPerSec), level: r.ackDropsPerSec ? 'over' : 'ok' }),
    },
    {
      title: 'SYN/s',
      width: 7,
      align: 'right',
      cell: (r) => ({
        text: perSec(r.synDropsPerSec) + (r.synDropsAttributed && r.synDropsPerSec ? ATTRIBUTED_MARK : ''),
        level: r.synDropsPerSec ? 'over' : 'ok',
      }),
    },
    {
      title: 'RST/s',
      width: 6,
      align: 'right',
      priority: 4,
      cell: (r) => ({ text: perSec(r.resetsPerSec), level: r.resetsPerSec ? 'warn' : 'ok' }),
    },
    {
      title: 'FDS',
      width: 8,
      align: 'right',
      priority: 3,
      cell: (r) => ({ text: fds(r.fds), ...(r.fds.kind === 'known' ? { level: r.fds.level } : { dim: true }) }),
    },
  );
  if (wide) {
    cols.push({ title: 'NETNS', width: 10, align: 'right', priority: 0, cell: (r) => String(r.netns) });
    cols.push({
      title: 'LIMIT BY',
      width: 9,
      priority: 0,
      cell: (r) => (r.cappedBySomaxconn ? { text: 'somaxconn', level: 'warn' } : { text: 'backlog', dim: true }),
    });
    // The SYN queue under pressure: cookies sent, and SYN-ACKs resent (handshakes whose last ACK did not come or was dropped).
    cols.push({
      title: 'COOKIE/s',
      width: 8,
      align: 'right',
      priority: 0,
      cell: (r) => ({ text: perSec(r.cookiesPerSec), level: r.cookiesPerSec ? 'warn' : 'ok' }),
    });
    cols.push({
      title: 'RESENT/s',
      width: 8,
      align: 'right',
      priority: 0,
      cell: (r) => ({ text: perSec(r.synackResentPerSec), level: r.synackResentPerSec ? 'warn' : 'ok' }),
    });
  }
  return cols;
}

export function ListenersPanel({ rows, width, height, active, selected, multiHost, wide, sort, filtered }: Props) {
  const attributed = rows.some((r) => r.synDropsAttributed && (r.synDropsPerSec ?? 0) > 0);
  const full = rows.filter((r) => r.queueLevel === 'over').length;
  return (
    <Box flexDirection="column">
      <PanelTitle name="LISTENERS" active={active}>
        {rows.length} {filtered ? 'matching' : 'shown'}
        {full ? `, ${full} full` : ''}
        {sort !== 'trouble' ? `  sort: ${sort}` : ''}
      </PanelTitle>
      <Table
        columns={columns(multiHost, wide, rows.some((r) => r.workload))}
        rows={rows}
        rowKey={(r) => r.key}
        width={width}
        height={height}
        active={active}
        selected={selected}
        empty={filtered ? 'no listener matches the filter' : 'no listening sockets seen yet'}
      />
      {attributed ? (
        <Text dimColor wrap="truncate">
          {' '}
          {ATTRIBUTED_MARK} SYN-stage drops attributed: ListenOverflows minus ACK-stage drops, split over the listeners seen full
        </Text>
      ) : null}
    </Box>
  );
}
