/** `wstrace doctor`: the capacity checklist against the live host, with the fix for each. */
import { writeFileSync } from 'node:fs';
import { hostname, release } from 'node:os';
import type { Writable } from 'node:stream';
import type { Command } from 'commander';
import { z } from 'zod';
import { exitCode, runChecks, type Finding } from '../doctor/checks.js';
import { checkDoctorScope, gatherFacts } from '../doctor/gather.js';
import { resolveNetns } from '../kernel/index.js';
import { UserError } from '../protocol/errors.js';
import { connectAgent } from '../client/connect.js';
import { clientOptions } from './connection.js';
import { addCommand, flag, type OnAction } from './flags.js';
import { pid, port, repeated } from './values.js';

/** Bad usage: distinct from the check results 0 (ok), 1 (warnings), 2 (failures). */
export const DOCTOR_USAGE_EXIT = 3;

export const doctorOptions = z.object({
  json: flag(z.boolean().default(false), { flags: '--json', help: 'the findings as JSON' }),
  ports: flag(repeated(port), { flags: '--port <n>', help: 'only listeners on this port (repeatable)' }),
  pid: flag(pid.optional(), { flags: '--pid <pid>', help: 'only listeners of this process' }),
  netns: flag(z.string().optional(), { flags: '--netns <name|path>', help: 'check this network namespace' }),
  write: flag(z.string().optional(), { flags: '--write <file>', help: 'also write the sysctl fixes as a sysctl.d drop-in' }),
  ...clientOptions.shape,
});

const MARK = { fail: 'FAIL', warn: 'WARN', ok: ' ok ' } as const;

export function renderFindings(findings: readonly Finding[], scope: string): string {
  const lines = [`wstrace doctor: ${hostname()} (Linux ${release()}), ${scope}`];
  const areas = [...new Set(findings.map((f) => f.area))];
  for (const area of areas) {
    lines.push('', area);
    for (const f of findings.filter((x) => x.area === area)) {
      lines.push(`  ${MARK[f.status]}  ${f.check}: ${f.value}`);
      if (f.status === 'ok') continue;
      lines.push(`        limits: ${f.limits}`);
      for (const fix of f.fix) lines.push(`        fix:    ${fix}`);
      if (f.evidence) lines.push(`        why:    ${f.evidence}`);
    }
  }
  const fails = findings.filter((f) => f.status === 'fail').length;
  const warns = findings.filter((f) => f.status === 'warn').length;
  lines.push('', `${fails} failing, ${warns} warnings, ${findings.length - fails - warns} ok. doctor changes nothing; apply the fix lines yourself (--write FILE writes the sysctl ones).`);
  return `${lines.join('\n')}\n`;
}

/** A sysctl.d drop-in with every sysctl fix; the others as comments. */
export function dropIn(findings: readonly Finding[]): string {
  const lines = ['# written by `wstrace doctor --write`: review, then copy to /etc/sysctl.d/ and run `sysctl --system`'];
  for (const f of findings) {
    if (f.status === 'ok' || f.fix.length === 0) continue;
    lines.push(`# ${f.area}: ${f.check}: ${f.value}`);
    for (const fix of f.fix) lines.push(/^[a-z][a-z0-9_.-]+ = /.test(fix) ? fix : `# ${fix.replace(/^# /, '')}`);
  }
  return `${lines.join('\n')}\n`;
}

/**
 * Any error ends doctor with 3: 1 and 2 are what it found, so an error
 * reported as 1 would read as "warnings" to a script checking the exit code.
 */
export async function runDoctor(o: z.infer<typeof doctorOptions>, out: Writable): Promise<number> {
  try {
    return await doctor(o, out);
  } catch (err) {
    if (err instanceof UserError && err.exitCode === DOCTOR_USAGE_EXIT) throw err;
    const usage = new UserError((err as Error).message, DOCTOR_USAGE_EXIT);
    if (err instanceof Error && !(err instanceof UserError)) usage.stack = err.stack;
    throw usage;
  }
}

async function doctor(o: z.infer<typeof doctorOptions>, out: Writable): Promise<number> {
  let findings: Finding[];
  let scope: string;
  if (o.connect) {
    // The agent's host, not this one: the agent runs the checks.
    if (o.netns !== undefined) throw new UserError('--netns is the agent\'s choice with --connect: start the agent with --netns.', DOCTOR_USAGE_EXIT);
    const agent = connectAgent(o.connect, o.tls);
    try {
      const r = await agent.doctor!({ ports: [...o.ports], ...(o.pid ? { pid: o.pid } : {}) });
      findings = r.findings as Finding[];
      scope = `${r.scope} via ${o.connect}`;
    } finally {
      agent.close();
    }
  } else {
    // Said before anything is read: a namespace that is not one, or a pid that runs nothing, would check nothing.
    if (o.netns !== undefined) {
      resolveNetns(o.netns);
      if (process.geteuid?.() !== 0) throw new UserError(`checking network namespace ${o.netns} means entering it, which needs root: run doctor with sudo.`);
    }
    checkDoctorScope(o);
    findings = runChecks(await gatherFacts(o));
    scope = [o.netns ? `netns ${o.netns}` : 'this network namespace', o.ports.length ? `ports ${o.ports.join(',')}` : '', o.pid ? `pid ${o.pid}` : '']
      .filter(Boolean)
      .join(', ');
  }
  const code = exitCode(findings);
  if (o.write) {
    try {
      writeFileSync(o.write, dropIn(findings), { mode: 0o644 });
    } catch (err) {
      throw new UserError(`cannot write ${o.write}: ${(err as NodeJS.ErrnoException).code ?? String(err)}.`, DOCTOR_USAGE_EXIT);
    }
  }
  out.write(
    o.json
      ? `${JSON.stringify({ host: hostname(), kernel: release(), scope, status: ['ok', 'warn', 'fail'][code], findings })}\n`
      : renderFindings(findings, scope),
  );
  return code;
}

export function registerDoctor(program: Command, onAction: OnAction): void {
  addCommand(
    program,
    {
      name: 'doctor',
      description: 'check the capacity settings against the live host; exit 0 ok, 1 warnings, 2 failures, 3 bad usage',
      options: doctorOptions,
      usageExit: DOCTOR_USAGE_EXIT,
    },
    onAction,
    (o) => runDoctor(o, process.stdout),
  );
}
