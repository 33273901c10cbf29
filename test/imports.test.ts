/**
 * The folders of src/ in data-flow order, and what each may import. The map in
 * docs/architecture.md says the same in words; this test keeps both true: an
 * import that reaches up a layer, or around a layer's public face, fails here.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const src = join(root, 'src');

/** Folder -> the folders it may import (besides itself). */
export const ALLOWED: Record<string, readonly string[]> = {
  generated: [],
  signals: ['generated'],
  protocol: ['signals', 'generated'],
  host: ['protocol', 'signals'],
  kernel: ['host', 'protocol', 'signals'],
  containers: ['host', 'protocol', 'signals', 'generated'],
  aggregate: ['protocol', 'signals', 'generated'],
  capture: ['kernel', 'host', 'protocol', 'signals'],
  doctor: ['kernel', 'host', 'protocol', 'signals'],
  agent: ['capture', 'containers', 'doctor', 'kernel', 'host', 'protocol', 'signals', 'generated'],
  client: ['protocol', 'signals', 'generated'],
  record: ['client', 'protocol', 'signals', 'generated'],
  ui: ['aggregate', 'protocol', 'signals'],
  cli: ['agent', 'client', 'record', 'ui', 'aggregate', 'capture', 'containers', 'doctor', 'kernel', 'host', 'protocol', 'signals', 'generated'],
};

/** Folders whose files others may import only through index.ts. */
const FACADES = new Set(['kernel', 'containers']);

function files(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? files(join(dir, e.name)) : /\.(ts|tsx)$/.test(e.name) ? [join(dir, e.name)] : [],
  );
}

interface Edge {
  readonly from: string;
  readonly to: string;
  readonly file: string;
  readonly spec: string;
}

/** Every relative import and re-export (static or dynamic) between folders of src/. */
export function edges(): Edge[] {
  const out: Edge[] = [];
  const pattern = /(?:\bfrom\s+|\bimport\s*\(\s*|^\s*import\s+)['"](\.{1,2}\/[^'"]+)['"]/gm;
  for (const file of files(src)) {
    const from = relative(src, file).split('/')[0]!;
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(pattern)) {
      const target = relative(src, resolve(dirname(file), m[1]!));
      const to = target.split('/')[0]!;
      if (to !== from) out.push({ from, to, file: relative(root, file), spec: target });
    }
  }
  return out;
}

describe('import graph', () => {
  const all = edges();

  it('finds the imports (the scan itself works)', () => {
    expect(all.length).toBeGreaterThan(50);
    expect(all.some((e) => e.from === 'cli' && e.to === 'agent')).toBe(true);
  });

  it('every folder of src/ has a place in the map', () => {
    const folders = readdirSync(src, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name);
    expect(folders.filter((f) => !(f in ALLOWED))).toEqual([]);
  });

  it('no folder imports a layer above it', () => {
    const bad = all.filter((e) => !(ALLOWED[e.from] ?? []).includes(e.to)).map((e) => `${e.file} imports ${e.spec}`);
    expect(bad).toEqual([]);
  });

  it('outside src/agent, only the CLI imports the agent', () => {
    const bad = all.filter((e) => e.to === 'agent' && e.from !== 'cli').map((e) => `${e.file} imports ${e.spec}`);
    expect(bad).toEqual([]);
  });

  it('other layers reach the kernel layer only through its index', () => {
    const bad = all
      .filter((e) => FACADES.has(e.to) && e.spec !== `${e.to}/index.js`)
      .map((e) => `${e.file} imports ${e.spec}`);
    expect(bad).toEqual([]);
  });

  it('the map has no cycle', () => {
    const seen = new Map<string, 'open' | 'done'>();
    const cycle: string[] = [];
    const visit = (n: string, path: string[]): void => {
      if (seen.get(n) === 'done') return;
      if (seen.get(n) === 'open') {
        cycle.push([...path, n].join(' -> '));
        return;
      }
      seen.set(n, 'open');
      for (const m of ALLOWED[n] ?? []) visit(m, [...path, n]);
      seen.set(n, 'done');
    };
    for (const n of Object.keys(ALLOWED)) visit(n, []);
    expect(cycle).toEqual([]);
  });
});
