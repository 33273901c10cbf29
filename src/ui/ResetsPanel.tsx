/** Resets: how many each way and why (exact), from whom (events), on which local ports (exact). */
import { Box } from 'ink';
import type { ResetPeerRow, ResetPortRow, ResetReasonRow, ResetsView } from '../aggregate/index.js';
import type { Column } from './columns.js';
import { compact, perSec, workloadLabel } from './format.js';
import { Figure } from './Figure.js';
import { PanelTitle } from './PanelTitle.js';
import { Table } from './Table.js';

type Props = {
  readonly resets: ResetsView;
  readonly peers: readonly ResetPeerRow[];
  readonly ports: readonly ResetPortRow[];
  readonly width: number;
  readonly height: number;
  readonly active: boolean;
  /** Over peers, then ports. */
  readonly selected: number;
  readonly multiHost: boolean;
  readonly wide: boolean;
  readonly sort: string;
};

const host = <T extends { host: string }>(): Column<T> => ({ title: 'HOST', width: 8, priority: 1, cell: (r) => r.host });

function reasonColumns(multiHost: boolean, wide: boolean): Column<ResetReasonRow>[] {
  return [
    ...(multiHost ? [host<ResetReasonRow>()] : []),
    { title: 'DIR', width: 4, cell: (r) => (r.direction === 'sent' ? 'sent' : 'recv') },
    { title: 'REASON', width: 12, flex: true, cell: (r) => r.reason },
    ...(wide ? [{ title: 'COUNT', width: 6, align: 'right', cell: (r) => compact(r.count) } satisfies Column<ResetReasonRow>] : []),
    { title: '/s', width: 5, align: 'right', cell: (r) => perSec(r.perSec) },
  ];
}

function peerColumns(multiHost: boolean, wide: boolean, peersNamed: boolean): Column<ResetPeerRow>[] {
  return [
    ...(multiHost ? [host<ResetPeerRow>()] : []),
    { title: 'PEER', width: 11, flex: true, cell: (r) => r.addr },
    ...(wide && peersNamed
      ? [{ title: 'OURS', width: 14, priority: 0, cell: (r) => workloadLabel(r.workload) || { text: '-', dim: true } } satisfies Column<ResetPeerRow>]
      : []),
    ...(wide
      ? ([
          { title: 'SENT/s', width: 6, align: 'right', cell: (r) => perSec(r.sentPerSec) },
          { title: 'RECV/s', width: 6, align: 'right', cell: (r) => perSec(r.receivedPerSec) },
        ] satisfies Column<ResetPeerRow>[])
      : [{ title: '/s', width: 5, align: 'right', cell: (r) => perSec(r.perSec) } satisfies Column<ResetPeerRow>]),
  ];
}

function portColumns(multiHost: boolean, wide: boolean): Column<ResetPortRow>[] {
  return [
    ...(multiHost ? [host<ResetPortRow>()] : []),
    { title: 'LOCAL PORT', width: 10, flex: true, cell: (r) => (r.port === undefined ? { text: 'ephemeral', dim: true } : String(r.port)) },
    ...(wide
      ? ([
          { title: 'SENT/s', width: 6, align: 'right', cell: (r) => perSec(r.sentPerSec) },
          { title: 'RECV/s', width: 6, align: 'right', cell: (r) => perSec(r.receivedPerSec) },
        ] satisfies Column<ResetPortRow>[])
      : [{ title: '/s', width: 5, align: 'right', cell: (r) => perSec(r.perSec) } satisfies Column<ResetPortRow>]),
  ];
}

export function ResetsPanel({ resets, peers, ports, width, height, active, selected, multiHost, wide, sort }: Props) {
  // Reasons get the most room: their names are long (TCP_ABORT_ON_DATA).
  const reasonsWidth = Math.floor(width * 0.4);
  const peersWidth = Math.floor(width * 0.32);
  const portsWidth = width - reasonsWidth - peersWidth;
  const inPeers = selected < peers.length;
  return (
    <Box flexDirection="column">
      <PanelTitle name="RESETS" active={active}>
        <Figure label="sent" value={`${perSec(resets.sentPerSec)}/s`} level={resets.sentPerSec ? 'warn' : 'ok'} />
        <Figure label="received" value={`${perSec(resets.receivedPerSec)}/s`} level={resets.receivedPerSec ? 'warn' : 'ok'} />
        {sort !== 'rate' ? `sort: ${sort}` : ''}
      </PanelTitle>
      <Box flexDirection="row">
        <Box width={reasonsWidth}>
          <Table
            columns={reasonColumns(multiHost, wide)}
            rows={resets.reasons}
            rowKey={(r) => r.key}
            width={reasonsWidth}
            height={height}
            active={false}
            selected={0}
            empty="none"
          />
        </Box>
        <Box width={peersWidth}>
          <Table
            columns={peerColumns(multiHost, wide, peers.some((r) => r.workload))}
            rows={peers}
            rowKey={(r) => r.key}
            width={peersWidth}
            height={height}
            active={active && inPeers}
            selected={selected}
            empty="none"
          />
        </Box>
        <Box width={portsWidth}>
          <Table
            columns={portColumns(multiHost, wide)}
            rows={ports}
            rowKey={(r) => r.key}
            width={portsWidth}
            height={height}
            active={active && !inPeers}
            selected={selected - peers.length}
            empty="none"
          />
        </Box>
      </Box>
    </Box>
  );
}
