/**
 * The flags as a user meets them. Each command's flags come from one zod
 * schema: help lists each flag once with its help text, the typed options the
 * command runs with carry their defaults and parsed values, and a bad value of
 * any typed flag is one sentence and a usage exit before the command runs.
 */
import { spawnSync } from 'node:child_process';
import { CommanderError, type Command } from 'commander';
import { describe, expect, it } from 'vitest';
import type { z } from 'zod';
import { agentOptions } from '../src/cli/agent.js';
import { captureOptions, capturesOptions } from '../src/cli/capture.js';
import { doctorOptions } from '../src/cli/doctor.js';
import { flagsOf, optionsOf, schemaOf } from '../src/cli/flags.js';
import { infoOptions } from '../src/cli/info.js';
import { buildProgram } from '../src/cli/main.js';
import { exportOptions, recordOptions, reportOptions } from '../src/cli/record.js';
import { replayOptions } from '../src/cli/replay.js';
import { topOptions } from '../src/cli/top.js';
import { watchOptions } from '../src/cli/watch.js';
import { DEFAULT_OLDER_PARTS, DEFAULT_PART_BYTES } from '../src/record/writer.js';
import { CLI } from './helpers/cli.js';
import { ROOT } from './helpers/kernel.js';

/** Each command and the schema its file exports. */
const SCHEMAS: Record<string, z.ZodObject> = {
  watch: watchOptions,
  agent: agentOptions,
  info: infoOptions,
  top: topOptions,
  capture: captureOptions,
  record: recordOptions,
  report: reportOptions,
  replay: replayOptions,
  export: exportOptions,
  doctor: doctorOptions,
  captures: capturesOptions,
};

/** The flags whose values are checked (the others take any text: files, namespaces, addresses). */
const TYPED: Record<string, string[]> = {
  watch: ['--duration', '--port', '--kind', '--last', '--since', '--ring-bytes', '--event-budget'],
  agent: ['--port', '--ring-bytes', '--event-budget', '--subscriber-queue', '--pre', '--max-captures', '--capture-cooldown'],
  info: [],
  top: ['--connect', '--port', '--window', '--ring-bytes', '--event-budget'],
  capture: ['--port', '--direction', '--duration', '--packets', '--bytes', '--snaplen', '--pre'],
  record: ['--duration', '--max-size', '--rotate', '--port', '--kind', '--event-budget'],
  report: [],
  replay: ['--speed'],
  export: [],
  doctor: ['--port', '--pid'],
  captures: [],
};

const JUNK = ['abc', '', '0', '-1', '2.5', '70000', '1e3', '5000'];

interface Parsed {
  /** Whether the command would have run: parsing succeeded and handed over its work. */
  readonly ran: boolean;
  readonly exitCode?: number;
  readonly stderr: string;
  readonly stdout: string;
  readonly program: Command;
}

/** `wstrace ARGS` parsed in this process; the command's work is never run, so nothing is loaded. */
function parse(args: string[]): Parsed {
  let stderr = '';
  let stdout = '';
  let ran = false;
  const program = buildProgram(() => (ran = true), { writeErr: (s) => (stderr += s), writeOut: (s) => (stdout += s) });
  try {
    program.parse(args, { from: 'user' });
    return { ran, stderr, stdout, program };
  } catch (err) {
    if (!(err instanceof CommanderError)) throw err;
    return { ran, exitCode: err.exitCode, stderr, stdout, program };
  }
}

/** The typed options `wstrace ARGS` runs with. */
function options(args: string[]): Record<string, unknown> {
  const p = parse(args);
  expect(p.stderr).toBe('');
  expect(p.ran).toBe(true);
  const cmd = p.program.commands.find((c) => c.name() === args[0])!;
  return optionsOf(cmd, schemaOf(cmd)!) as Record<string, unknown>;
}

const longName = (flags: string) => /--[\w-]+/.exec(flags)![0];
const commands = () => buildProgram(() => undefined).commands;

describe('every command declares each flag once', () => {
  it('each command has its exported schema, and commander holds exactly the flags the schema declares', () => {
    expect(commands().map((c) => c.name())).toEqual(Object.keys(SCHEMAS));
    for (const cmd of commands()) {
      const schema = SCHEMAS[cmd.name()]!;
      expect(schemaOf(cmd), cmd.name()).toBe(schema);
      const flags = flagsOf(schema);
      expect(
        cmd.options.map((o) => o.flags),
        cmd.name(),
      ).toEqual(flags.map((f) => f.meta.flags));
      for (const [i, o] of cmd.options.entries()) {
        const f = flags[i]!;
        expect(o.isBoolean(), o.flags).toBe(f.switch);
        expect(o.mandatory, o.flags).toBe(f.required && !f.switch);
        expect(o.argChoices, o.flags).toEqual(f.choices);
      }
    }
  });

  it.each(Object.keys(SCHEMAS))('`wstrace %s --help` lists each of its flags once, with its help text', (name) => {
    const p = parse([name, '--help']);
    expect(p.exitCode).toBe(0);
    const flags = flagsOf(SCHEMAS[name]!);
    const listed = p.stdout.split('\n').filter((l) => /^ {2}(-\w, )?--[\w-]+/.test(l));
    expect(listed.map((l) => longName(l))).toEqual([...flags.map((f) => longName(f.meta.flags)), '--help']);
    const text = p.stdout.replace(/\s+/g, ' ');
    for (const f of flags) expect(text, f.meta.flags).toContain(`${f.meta.flags} ${f.meta.help}`);
  });

  it('`wstrace --help` lists every command', () => {
    const p = parse(['--help']);
    expect(p.exitCode).toBe(0);
    for (const name of Object.keys(SCHEMAS)) expect(p.stdout).toMatch(new RegExp(`^  ${name} `, 'm'));
  });
});

describe('a bad value is one sentence and a usage exit, before the command runs', () => {
  it.each(Object.keys(SCHEMAS))('every typed flag of %s', (name) => {
    const rejecting = new Set<string>();
    const cmd = commands().find((c) => c.name() === name)!;
    const positional = cmd.registeredArguments.map(() => 'some.wsr');
    for (const option of cmd.options) {
      if (option.isBoolean()) continue;
      // A required flag other than the one under test is given, so only the value under test can fail.
      const required = cmd.options.filter((o) => o.mandatory && o !== option).flatMap((o) => [o.long!, 'x']);
      for (const junk of JUNK) {
        const p = parse([name, ...positional, ...required, option.long!, junk]);
        if (p.exitCode === undefined) {
          expect(p.ran).toBe(true);
          continue;
        }
        rejecting.add(option.long!);
        expect(p.ran, `${option.flags} ${junk}`).toBe(false);
        expect(p.exitCode, `${option.flags} ${junk}`).toBe(name === 'doctor' ? 3 : 1);
        const lines = p.stderr.trimEnd().split('\n');
        expect(lines, `${option.flags} ${junk}`).toHaveLength(2);
        const prefix = `error: option '${option.flags}' argument '${junk}' is invalid. `;
        expect(lines[0]!.startsWith(prefix), lines[0]).toBe(true);
        const reason = lines[0]!.slice(prefix.length);
        expect(reason, lines[0]).toMatch(/^[a-zA-Z][^\n]*\.$/);
        expect(reason.split(/\.\s/), `one sentence: ${reason}`).toHaveLength(1);
        expect(lines[1]).toBe('(run with --help for usage)');
        expect(p.stdout).toBe('');
      }
    }
    expect([...rejecting].sort()).toEqual([...TYPED[name]!].sort());
  });

  it('the messages tests and users rely on are unchanged', () => {
    const reason = (args: string[]) => parse(args).stderr.split('\n')[0];
    expect(reason(['watch', '--port', 'http'])).toBe("error: option '--port <n>' argument 'http' is invalid. a port is a number from 1 to 65535.");
    expect(reason(['watch', '--duration', '-3'])).toMatch(/give a positive number of seconds, at most 2592000 \(30 days\)\.$/);
    expect(reason(['agent', '--subscriber-queue', '0'])).toMatch(/give a whole number from 1 to 1000000\.$/);
    expect(reason(['record', '-o', 'f', '--max-size', '0'])).toMatch(/give a size from 1M to 1T: a number of bytes, or one with K, M, G or T \(powers of 1024\)\.$/);
    expect(reason(['record', '-o', 'f', '--rotate', '1001'])).toMatch(/give a whole number of older parts from 0 to 1000\.$/);
    expect(reason(['agent', '--ring-bytes', '5000'])).toMatch(/the ring size is a power of two from 4096 to 1073741824 bytes\.$/);
    expect(reason(['watch', '--event-budget', '-1'])).toMatch(/give a whole number of events per second from 0 \(every event\) to 1000000000\.$/);
    expect(reason(['watch', '--kind', 'syn'])).toMatch(/kinds are reset_sent, .*\.$/);
    expect(reason(['watch', '--since', 'yesterday'])).toMatch(/give a time like 2026-11-28T06:50:00Z or a duration back from now like 30s, 5m, 2h\.$/);
    expect(reason(['top', '--window', '5'])).toMatch(/the window is 1, 10 or 60 seconds\.$/);
    expect(reason(['top', '--connect', ' , '])).toMatch(/give one or more agent addresses: unix:\/PATH or tcp:\/\/HOST:PORT, comma-separated\.$/);
    expect(reason(['replay', 'f.wsr', '--speed', '0'])).toMatch(/the speed is a number from 0\.1 to 1000 \(like 2 or 10x\)\.$/);
    expect(reason(['capture', '--direction', 'up'])).toMatch(/Allowed choices are src, dst\.$/);
    expect(reason(['record'])).toBe("error: required option '-o, --out <file>' not specified");
    expect(reason(['doctor', '--pid', 'abc'])).toBe("error: option '--pid <pid>' argument 'abc' is invalid. a pid is a whole number from 1 to 4194304.");
  });
});

describe('the options a command runs with', () => {
  it('defaults: what a command gets when no flag is given', () => {
    expect(options(['agent'])).toEqual({
      listen: 'unix:/run/wstrace/agent.sock',
      tls: {},
      insecure: false,
      allowCaptures: false,
      ports: [],
      cgroups: [],
      captures: { dir: '/var/lib/wstrace/captures', limits: {} },
    });
    expect(options(['watch'])).toEqual({ json: false, ports: [], kinds: [], cgroups: [], tls: {} });
    expect(options(['top'])).toEqual({ connect: [], tls: {}, ports: [], cgroups: [], window: 10 });
    expect(options(['replay', 'f.wsr'])).toEqual({ speed: 1 });
    expect(options(['doctor'])).toEqual({ json: false, ports: [], tls: {} });
    expect(options(['record', '-o', 'f.wsr'])).toMatchObject({ out: 'f.wsr', maxSize: DEFAULT_PART_BYTES, rotate: DEFAULT_OLDER_PARTS });
  });

  it('values: repeatable flags collect, typed flags parse, shared client flags land in tls', () => {
    const before = Date.now();
    const watch = options([
      ...['watch', '--port', '80', '--port', '443', '--kind', 'reset_sent', '--since', '5m', '--duration', '1.5', '--json'],
      ...['--connect', 'tcp://h:1', '--tls-ca', 'ca.pem', '--tls-cert', 'c.pem', '--tls-key', 'k.pem'],
    ]);
    expect(watch).toMatchObject({
      ports: [80, 443],
      kinds: ['reset_sent'],
      durationSec: 1.5,
      json: true,
      connect: 'tcp://h:1',
      tls: { ca: 'ca.pem', cert: 'c.pem', key: 'k.pem' },
    });
    // --cgroup is repeatable on every command that loads BPF itself (the paths are resolved when it runs).
    for (const cmd of [['watch'], ['top'], ['agent'], ['record', '-o', 'f.wsr']]) {
      expect(options([...cmd, '--cgroup', '/kubepods.slice', '--cgroup', 'system.slice/x.service']).cgroups).toEqual([
        '/kubepods.slice',
        'system.slice/x.service',
      ]);
    }
    expect(watch.sinceMs).toBeGreaterThanOrEqual(before - 300_000);
    expect(watch.sinceMs).toBeLessThanOrEqual(Date.now() - 300_000);
    expect(options(['top', '--connect', 'unix:/a.sock,tcp://b:1', '--connect', 'unix:/c.sock', '--window', '60s', '--insecure'])).toMatchObject({
      connect: ['unix:/a.sock', 'tcp://b:1', 'unix:/c.sock'],
      window: 60,
      tls: { insecure: true },
    });
    const agent = options([
      ...['agent', '--listen', 'tcp://0.0.0.0:7000', '--tls-cert', 's.pem', '--tls-key', 's.key', '--tls-client-ca', 'ca.pem'],
      ...['--pre', '5', '--rules', 'r.conf', '--max-captures', '3', '--capture-cooldown', '60', '--subscriber-queue', '100'],
      '--allow-captures',
    ]);
    expect(agent).toMatchObject({
      listen: 'tcp://0.0.0.0:7000',
      allowCaptures: true,
      tls: { cert: 's.pem', key: 's.key', clientCa: 'ca.pem' },
      subscriberQueue: 100,
      captures: { dir: '/var/lib/wstrace/captures', rulesFile: 'r.conf', preSec: 5, limits: { maxRunning: 3, cooldownSec: 60 } },
    });
    expect(options(['capture', '--port', '443', '--direction', 'dst'])).toMatchObject({ port: 443, direction: 'dst' });
    expect(options(['replay', 'f.wsr', '--speed', '10x'])).toEqual({ speed: 10 });
    expect(options(['record', '-o', 'f.wsr', '--max-size', '5000000000', '--rotate', '0'])).toMatchObject({ maxSize: 5e9, rotate: 0 });
    // 0 is a budget too: none, every event sent.
    expect(options(['agent', '--event-budget', '0'])).toMatchObject({ eventBudget: 0 });
    expect(options(['watch', '--event-budget', '100'])).toMatchObject({ eventBudget: 100 });
  });
});

describe('the installed command, as a user runs it', () => {
  const run = (...args: string[]) => spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', cwd: ROOT, timeout: 20_000 });

  it.each([
    [['agent', '--ring-bytes', '1000'], 1, "error: option '--ring-bytes <n>' argument '1000' is invalid. the ring size is a power of two from 4096 to 1073741824 bytes."],
    [['doctor', '--port', '0'], 3, "error: option '--port <n>' argument '0' is invalid. a port is a number from 1 to 65535."],
    [['doctor', '--bogus'], 3, "error: unknown option '--bogus'"],
    [['record', '--duration', '5'], 1, "error: required option '-o, --out <file>' not specified"],
    [['replay', '/nonexistent/x.wsr', '--speed', 'fast'], 1, "error: option '--speed <x>' argument 'fast' is invalid. the speed is a number from 0.1 to 1000 (like 2 or 10x)."],
    [['capture', '--direction', 'up'], 1, "error: option '--direction <dir>' argument 'up' is invalid. Allowed choices are src, dst."],
  ])('%j: one sentence, exit %i', (args, code, sentence) => {
    const r = run(...args);
    expect(r.status).toBe(code);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe(`${sentence}\n(run with --help for usage)\n`);
  });

  it('--help of the program and of a command exit 0 and list what they hold', () => {
    const top = run('--help');
    expect(top.status).toBe(0);
    for (const name of Object.keys(SCHEMAS)) expect(top.stdout).toMatch(new RegExp(`^  ${name} `, 'm'));
    const agent = run('agent', '--help');
    expect(agent.status).toBe(0);
    for (const f of flagsOf(agentOptions)) expect(agent.stdout).toContain(f.meta.flags);
    expect(agent.stdout.replace(/\s+/g, ' ')).toContain('(default: "unix:/run/wstrace/agent.sock")');
  });
});
