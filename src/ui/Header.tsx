/** The first lines: which hosts, which kernel, what the hooks can see, what was lost, how fresh. */
import { Box, Text } from 'ink';
import type { SourceView, WindowSec } from '../aggregate/index.js';
import { age, compact } from './format.js';
import { Figure } from './Figure.js';
import { levelColor, useColor } from './theme.js';

type Props = {
  readonly sources: readonly SourceView[];
  readonly window: WindowSec;
  readonly paused: boolean;
  readonly wide: boolean;
  /** Lines available for per-host status when there are several. */
  readonly maxHostLines: number;
};

function SourceFigures({ s, wide }: { readonly s: SourceView; readonly wide: boolean }) {
  const color = useColor();
  if (s.state !== 'up') {
    const retry = s.retryInMs === undefined ? '' : s.retryInMs > 0 ? `, retry in ${Math.ceil(s.retryInMs / 1000)}s` : ', retrying';
    return (
      <Text color={levelColor(s.state === 'down' ? 'over' : 'warn', color)}>
        {s.state === 'down' ? `DOWN${s.error ? `: ${s.error}` : ''}${retry}` : 'connecting…'}
      </Text>
    );
  }
  const lost = s.lostKernel + s.lostSlow;
  // Beyond the budget events come as exact summaries: said whenever some did, and always where there is room.
  const budget = s.eventBudget ? `${compact(s.eventBudget)}/s, ${compact(s.summarised)} summarised` : 'off, every event sent';
  // Most telling first: a narrow terminal cuts the end of the line.
  return (
    <Text>
      <Figure label="hooks" value={`${s.hooksLive}/${s.hooksTotal} live`} level={s.hooksLive < s.hooksTotal ? 'warn' : 'ok'} />
      <Figure label="lost" value={compact(lost)} level={s.lostInWindow > 0 ? 'over' : lost > 0 ? 'warn' : 'ok'} />
      {wide || s.summarised > 0 ? <Figure label="budget" value={budget} level={s.summarisedInWindow > 0 ? 'warn' : 'ok'} /> : null}
      {s.unknownEvents ? <Figure label="unknown kinds" value={`${compact(s.unknownEvents)}, upgrade wstrace`} level="warn" /> : null}
      <Figure label="sample" value={age(s.sampleAgeMs)} level={s.sampleAgeMs === undefined ? 'ok' : s.sampleLevel} />
      <Figure label="Linux" value={s.kernel ?? '?'} />
      {s.capturesRunning || s.lastCapture ? (
        <Figure label="captures" value={`${s.capturesRunning} running${s.lastCapture ? ` ${s.lastCapture}` : ''}`} level={s.capturesRunning ? 'warn' : 'ok'} />
      ) : null}
      {wide && s.scope ? <Figure label="tracing" value={s.scope} /> : null}
      {wide && s.blind.length ? <Figure label="blind" value={s.blind.join(', ')} /> : null}
    </Text>
  );
}

export function Header({ sources, window, paused, wide, maxHostLines }: Props) {
  const tail = <Figure label="window" value={`${window}s`} />;
  const pause = paused ? <Text inverse>PAUSED</Text> : null;
  if (sources.length === 1) {
    const s = sources[0]!;
    return (
      <Text wrap="truncate">
        <Text bold>wstrace top</Text> <Text bold>{s.label}</Text>
        {'  '}
        {pause}
        {pause ? '  ' : ''}
        <SourceFigures s={s} wide={wide} />
        {tail}
      </Text>
    );
  }
  const up = sources.filter((s) => s.state === 'up').length;
  const shown = sources.length > maxHostLines ? sources.slice(0, Math.max(0, maxHostLines - 1)) : sources;
  const hidden = sources.slice(shown.length);
  const width = Math.min(16, Math.max(4, ...sources.map((s) => s.label.length)));
  return (
    <Box flexDirection="column">
      <Text wrap="truncate">
        <Text bold>wstrace top</Text>
        {'  '}
        {pause}
        {pause ? '  ' : ''}
        <Figure label="hosts" value={`${up}/${sources.length} up`} level={up < sources.length ? 'over' : 'ok'} />
        {tail}
      </Text>
      {shown.map((s) => (
        <Text key={s.id} wrap="truncate">
          {' '}
          <Text bold>{s.label.padEnd(width).slice(0, width)}</Text> <SourceFigures s={s} wide={wide} />
        </Text>
      ))}
      {hidden.length ? (
        <Text wrap="truncate">
          {' '}+{hidden.length} more: {hidden.map((s) => `${s.label} ${s.state}`).join(', ')}
        </Text>
      ) : null}
    </Box>
  );
}
