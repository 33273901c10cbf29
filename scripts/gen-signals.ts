/**
 * Writes every copy of the signal table (src/signals/table.ts) that is not
 * TypeScript: the C enums, the addon's hook list, the proto's EventKind values
 * and the README's hook table. The outputs are committed, so building needs no
 * tsx; `--check` fails, naming the file, when a committed copy differs from
 * what the table makes now (scripts/check-generated.sh runs it).
 *
 *   tsx scripts/gen-signals.ts           # write
 *   tsx scripts/gen-signals.ts --check   # compare only
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { COUNTER_NAMES, PROGRAM_HITS } from '../src/signals/kinds.js';
import { PIPELINE_COUNTERS, SIGNALS, type KernelCheck, type SignalSpec } from '../src/signals/table.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const SOURCE = 'src/signals/table.ts';
const table: readonly SignalSpec[] = SIGNALS;

/** resetSent -> RESET_SENT; reset_sent -> RESET_SENT. */
function upperSnake(name: string): string {
  return name.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase();
}

/** wst_synrecv_fexit -> WST_P_SYNRECV_FEXIT. */
export function hitEnum(hit: string): string {
  return `WST_P_${upperSnake(hit.replace(/^wst_/, ''))}`;
}

function causeEnum(cEnum: string, cause: string): string {
  return `${cEnum.toUpperCase()}_${cause}`;
}

function cString(s: string): string {
  return JSON.stringify(s);
}

/** Checks the table for what no type can: unique numbers and names, counters and hits 0..n-1. */
export function tableProblems(): string[] {
  const problems: string[] = [];
  const dup = (what: string, values: readonly (string | number)[]) => {
    const seen = new Set<string | number>();
    for (const v of values) {
      if (seen.has(v)) problems.push(`${what} ${v} is used twice`);
      seen.add(v);
    }
  };
  dup('signal name', table.map((s) => s.name));
  dup('kind code', table.flatMap((s) => (s.kind ? [s.kind.code] : [])));
  dup('proto value', table.flatMap((s) => (s.kind ? [s.kind.proto] : [])));
  dup('counter', COUNTER_NAMES);
  dup('hit counter', PROGRAM_HITS);
  dup('program', table.flatMap((s) => s.hooks.flatMap((h) => h.programs)));
  for (const s of table) {
    if (!/^[a-z][a-z0-9_]*$/.test(s.name)) problems.push(`signal name ${s.name} is not snake_case`);
    if (s.kind && (s.kind.code < 1 || s.kind.code > 255)) problems.push(`${s.name}: kind code must fit a u8 and not be 0`);
    if (s.kind && s.kind.proto < 1) problems.push(`${s.name}: proto value 0 is EVENT_KIND_UNSPECIFIED`);
    if (s.hooks.length === 0) problems.push(`${s.name}: no hook variant`);
    const variants = s.hooks.map((h) => h.variant);
    if (new Set(variants).size !== variants.length) problems.push(`${s.name}: two variants share a name`);
    const causes = s.kind?.reason && 'causes' in s.kind.reason ? s.kind.reason.causes.length : 0;
    if (causes & (causes - 1)) problems.push(`${s.name}: the number of causes must be a power of two (the BPF side masks by it)`);
  }
  return problems;
}

function cHeader(): string {
  const kinds = table.filter((s) => s.kind);
  const lines = [
    '/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */',
    `/* Generated from ${SOURCE} by \`npm run gen\`: edit the table, not this file. */`,
    '#ifndef WSTRACE_SIGNALS_GEN_H',
    '#define WSTRACE_SIGNALS_GEN_H',
    '',
    '/* Event kinds: the ring record\'s `kind`. Stable numbers, never reused. */',
    'enum wst_kind {',
    ...kinds.map((s) => {
      const reason = s.kind?.reason && 'causes' in s.kind.reason ? ` reason holds enum ${s.kind.reason.cEnum}.` : '';
      return `\tWST_${upperSnake(s.name)} = ${s.kind!.code},\t/* ${s.description}${reason} */`;
    }),
    '};',
  ];
  for (const s of kinds) {
    const r = s.kind!.reason;
    if (!r || !('causes' in r)) continue;
    lines.push('', `/* ${s.name}: the reason wstrace judged (an index). */`, `enum ${r.cEnum} {`);
    r.causes.forEach((c, i) => lines.push(`\t${causeEnum(r.cEnum, c)} = ${i},`));
    lines.push(`\t${r.cEnum.toUpperCase()}__MAX = ${r.causes.length},`, '};');
  }
  const docs = new Map<string, string>([
    ...table.flatMap((s) => s.counters.map((c): [string, string] => [c.name, `${s.name}: ${c.doc}`])),
    ...PIPELINE_COUNTERS.map((c): [string, string] => [c.name, c.doc]),
  ]);
  lines.push('', '/* Indexes of the per-CPU totals array. */', 'enum wst_counter {');
  COUNTER_NAMES.forEach((c, i) => lines.push(`\tWST_CNT_${upperSnake(c)} = ${i},\t/* ${docs.get(c)} */`));
  lines.push(`\tWST_CNT__MAX = ${COUNTER_NAMES.length},`, '};');
  lines.push(
    '',
    '/*',
    ' * Hit counters, one per program group, so a kernel matrix can say "fired" for',
    ' * each hook variant without needing its traffic to pass the filters.',
    ' */',
    'enum wst_prog {',
  );
  let i = 0;
  for (const s of table) {
    for (const h of s.hooks) for (const hit of h.hits) lines.push(`\t${hitEnum(hit)} = ${i++},\t/* ${s.name} ${h.variant} */`);
  }
  lines.push(`\tWST_P__MAX = ${i},`, '};', '', '#endif /* WSTRACE_SIGNALS_GEN_H */', '');
  return lines.join('\n');
}

function check(c: KernelCheck | undefined): string {
  if (!c) return 'std::nullopt';
  return `KernelCheck{${c.btf === 'enum'}, ${cString(c.type)}, ${cString(c.member)}, ${cString(c.absent)}}`;
}

function addonHeader(): string {
  const lines = [
    `// Generated from ${SOURCE} by \`npm run gen\`: edit the table, not this file.`,
    '// The signals in attach order, each with its hook variants best first.',
    '#pragma once',
    '#include <cstddef>',
    '',
    '#include "variants.h"',
    '#include "wstrace.h"',
    '',
    'namespace wstrace {',
    '',
    'static const std::vector<SignalDef> kSignals = {',
  ];
  for (const s of table) {
    lines.push(`    {${cString(s.name)},`, '     {');
    for (const h of s.hooks) {
      const programs = h.programs.map(cString).join(', ');
      const vsw = 'switchField' in h && h.switchField ? `, static_cast<int>(offsetof(struct wst_switches, ${h.switchField}))` : '';
      lines.push(`         {${cString(h.variant)}, ${h.object === 'core'}, ${cString(h.hook)}, {${programs}}, ${check(h.needs)}${vsw}},`);
    }
    const sw = s.switchField ? `static_cast<int>(offsetof(struct wst_switches, ${s.switchField}))` : '-1';
    lines.push('     },', `     ${check(s.onlyWithout)},`, `     ${sw}},`);
  }
  lines.push('};', '');
  const named = (name: string, entries: Array<[string, string]>) => {
    lines.push(`static const NamedValue ${name}[] = {`);
    for (const [n, v] of entries) lines.push(`    {${cString(n)}, ${v}},`);
    lines.push('};', '');
  };
  named('kKindCodes', table.filter((s) => s.kind).map((s) => [s.name, `WST_${upperSnake(s.name)}`]));
  named('kCounterIndexes', COUNTER_NAMES.map((c) => [c, `WST_CNT_${upperSnake(c)}`]));
  named('kHitIndexes', PROGRAM_HITS.map((h) => [h, hitEnum(h)]));
  // kind.CAUSE: each kind whose reason is wstrace's own judgement.
  named(
    'kCauseIndexes',
    table.flatMap((s) => {
      const r = s.kind?.reason;
      return r && 'causes' in r ? r.causes.map((c): [string, string] => [`${s.name}.${c}`, causeEnum(r.cEnum, c)]) : [];
    }),
  );
  lines.push('}  // namespace wstrace', '');
  return lines.join('\n');
}

const PROTO_BEGIN = '  // BEGIN generated from src/signals/table.ts by `npm run gen`: edit the table, not these values.';
const PROTO_END = '  // END generated';

function protoKinds(): string {
  // Blank lines around the values keep the markers detached: ts-proto copies only the comments attached to a value.
  const out: string[] = ['', ''];
  for (const s of table) {
    if (!s.kind) continue;
    out.push(...s.kind.protoDoc.map((l) => `  // ${l}`), `  EVENT_KIND_${upperSnake(s.name)} = ${s.kind.proto};`);
  }
  out.push('');
  return out.join('\n');
}

const README_BEGIN = '<!-- BEGIN generated from src/signals/table.ts by `npm run gen`: edit the table, not this table. -->';
const README_END = '<!-- END generated -->';

function hookCell(s: SignalSpec): string {
  const groups: Array<{ hook: string; names: string[] }> = [];
  for (const h of s.hooks) {
    const name = `${h.variant}${h.kernels ? ` (${h.kernels})` : ''}`;
    const last = groups[groups.length - 1];
    if (last && last.hook === h.hook) last.names.push(name);
    else groups.push({ hook: h.hook, names: [name] });
  }
  return groups.map((g) => `${g.names.join(', then ')} on \`${g.hook}\``).join('; else ');
}

function readmeTable(): string {
  const rows = table.map((s) => `| ${s.label} (\`${s.name}\`) | ${hookCell(s)} | ${s.notes ?? ''} |`);
  return ['', '| signal | hooks, best first | notes |', '|---|---|---|', ...rows].join('\n');
}

/** Replaces what lies between two marker lines of a file's text. */
function between(text: string, begin: string, end: string, body: string, file: string): string {
  const a = text.indexOf(begin);
  const b = text.indexOf(end, a);
  if (a < 0 || b < 0) throw new Error(`${file}: the markers "${begin.trim()}" ... "${end.trim()}" are missing`);
  return text.slice(0, a + begin.length) + body + '\n' + text.slice(b);
}

export interface Output {
  readonly file: string;
  readonly text: string;
}

/** Every generated file as the table makes it now. */
export function outputs(): Output[] {
  const read = (f: string) => readFileSync(join(ROOT, f), 'utf8');
  const proto = 'proto/wstrace/v1/tracer.proto';
  return [
    { file: 'bpf/signals.gen.h', text: cHeader() },
    { file: 'addon/hooks.gen.h', text: addonHeader() },
    { file: proto, text: between(read(proto), PROTO_BEGIN, PROTO_END, protoKinds(), proto) },
    { file: 'README.md', text: between(read('README.md'), README_BEGIN, README_END, readmeTable(), 'README.md') },
  ];
}

/** The generated files that differ from what is on disk. */
export function stale(): string[] {
  return outputs()
    .filter((o) => {
      try {
        return readFileSync(join(ROOT, o.file), 'utf8') !== o.text;
      } catch {
        return true;
      }
    })
    .map((o) => o.file);
}

function main(): number {
  const problems = tableProblems();
  if (problems.length) {
    process.stderr.write(`${SOURCE}: ${problems.join('; ')}\n`);
    return 1;
  }
  if (process.argv.includes('--check')) {
    const files = stale();
    if (files.length) {
      process.stderr.write(`${files.join(', ')}: not what ${SOURCE} makes now: run \`npm run gen\` and commit the result.\n`);
      return 1;
    }
    return 0;
  }
  for (const o of outputs()) writeFileSync(join(ROOT, o.file), o.text);
  return 0;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) process.exitCode = main();
