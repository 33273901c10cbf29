/** Capacity: sockets, TCP memory against tcp_mem, SYN cookies, listen drops no listener explains, fds. */
import { Box } from 'ink';
import type { CapacityRow } from '../aggregate/index.js';
import type { Column } from './columns.js';
import { compact, fds, perSec, processName } from './format.js';
import { PanelTitle } from './PanelTitle.js';
import { Table } from './Table.js';

type Props = {
  readonly rows: readonly CapacityRow[];
  readonly width: number;
  readonly height: number;
  readonly active: boolean;
  readonly selected: number;
  readonly multiHost: boolean;
  readonly wide: boolean;
};

const opt = (n: number | undefined) => (n === undefined ? '-' : compact(n));

function mem(r: CapacityRow): string {
  if (r.memPages === undefined) return '-';
  return r.memState === 'unknown' ? compact(r.memPages) : `${compact(r.memPages)} ${r.memState}`;
}

function columns(multiHost: boolean, wide: boolean): Column<CapacityRow>[] {
  const drops = (r: CapacityRow) =>
    r.synQueueDropsPerSec === undefined && r.otherListenDropsPerSec === undefined && r.unattributedPerSec === undefined
      ? undefined
      : (r.synQueueDropsPerSec ?? 0) + (r.otherListenDropsPerSec ?? 0) + (r.unattributedPerSec ?? 0);
  return [
    ...(multiHost ? [{ title: 'HOST', width: 8, cell: (r) => r.host } satisfies Column<CapacityRow>] : []),
    { title: 'SOCKETS', width: 7, align: 'right', cell: (r) => opt(r.socketsUsed) },
    { title: 'TCP', width: 6, align: 'right', cell: (r) => opt(r.tcpInuse) },
    { title: 'ORPHAN', width: 6, align: 'right', priority: 2, cell: (r) => opt(r.orphans) },
    { title: 'TCP MEM PAGES', width: 15, cell: (r) => ({ text: mem(r), level: r.memLevel }) },
    ...(wide
      ? ([
          {
            title: 'tcp_mem LOW/PRESS/HIGH',
            width: 22,
            cell: (r) => (r.tcpMem ? `${compact(r.tcpMem.low)}/${compact(r.tcpMem.pressure)}/${compact(r.tcpMem.high)}` : '-'),
          },
          { title: 'SYNQ/s', width: 6, align: 'right', cell: (r) => ({ text: perSec(r.synQueueDropsPerSec), level: r.synQueueDropsPerSec ? 'over' : 'ok' }) },
          { title: 'OTHER/s', width: 7, align: 'right', cell: (r) => ({ text: perSec(r.otherListenDropsPerSec), level: r.otherListenDropsPerSec ? 'over' : 'ok' }) },
          { title: 'UNATTR/s', width: 8, align: 'right', cell: (r) => ({ text: perSec(r.unattributedPerSec), level: r.unattributedPerSec ? 'over' : 'ok' }) },
        ] satisfies Column<CapacityRow>[])
      : [
          { title: 'DROP/s', width: 6, align: 'right', cell: (r) => ({ text: perSec(drops(r)), level: r.dropLevel }) } satisfies Column<CapacityRow>,
        ]),
    { title: 'COOKIE/s', width: 8, align: 'right', cell: (r) => ({ text: perSec(r.syncookiesPerSec), level: r.syncookiesLevel }) },
    {
      title: 'FILES',
      width: 11,
      align: 'right',
      priority: 1,
      cell: (r) => (r.files ? { text: `${compact(r.files.allocated)}/${compact(r.files.max)}`, level: r.files.level } : '-'),
    },
    {
      title: 'FDS (FULLEST)',
      width: 21,
      flex: true,
      cell: (r) =>
        r.worstFds.kind === 'known'
          ? { text: `${processName(r.worstFds.comm ?? '', r.worstFds.pid)} ${fds(r.worstFds)}`, level: r.worstFds.level }
          : { text: fds(r.worstFds), dim: true },
    },
  ];
}

export function CapacityPanel({ rows, width, height, active, selected, multiHost, wide }: Props) {
  const dropping = rows.some((r) => r.dropLevel === 'over');
  const doc = rows.find((r) => r.doctor && r.doctor.fail + r.doctor.warn > 0)?.doctor;
  const checked = rows.some((r) => r.doctor);
  const doctor = doc
    ? `doctor: ${doc.fail} failing, ${doc.warn} warnings${doc.first ? ` (${doc.first})` : ''}: run wstrace doctor for the fixes`
    : checked
      ? 'doctor: all checks ok'
      : '';
  return (
    <Box flexDirection="column">
      <PanelTitle name="CAPACITY" active={active}>
        {dropping ? 'DROP/s: listen drops no listener explains (SYN queue full, other, unattributed)' : doctor}
      </PanelTitle>
      <Table
        columns={columns(multiHost, wide)}
        rows={rows}
        rowKey={(r) => r.source}
        width={width}
        height={height}
        active={active}
        selected={selected}
        empty="waiting for the first snapshot"
      />
    </Box>
  );
}
