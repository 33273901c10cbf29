/**
 * How tcpdump runs for the agent: argv only, never a shell string; tied to
 * the agent's life by the kernel and bounded in time even if the agent
 * stalls.
 *
 *   setpriv --pdeathsig KILL -- timeout -s INT -k 5 LIMIT \
 *     setpriv --pdeathsig KILL -- [nsenter --net=NS --] tcpdump ... -w -
 *
 * Node cannot call prctl(PR_SET_PDEATHSIG) itself; setpriv sets it and it
 * survives the exec chain. The outer one kills timeout when the agent dies
 * (even by SIGKILL); the inner one kills tcpdump when timeout dies, since a
 * fork clears the setting. timeout is the supervisor of last resort for the
 * duration (the agent's own timer fires first) and forwards the agent's
 * SIGINT to tcpdump, which then flushes and closes the file.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import { UserError } from '../protocol/errors.js';

/** Seconds past a capture's own duration before timeout(1) stops it, and again before it kills it. */
export const SUPERVISOR_GRACE_SEC = 5;

/** timeout(1)'s exit status when it stopped the command itself. */
export const TIMED_OUT = 124;

function findOnPath(cmd: string): string | undefined {
  if (cmd.includes('/')) return cmd;
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    try {
      accessSync(join(dir, cmd), constants.X_OK);
      return join(dir, cmd);
    } catch {
      // keep looking
    }
  }
  return undefined;
}

function need(cmd: string, pkg: string): string {
  const path = findOnPath(cmd);
  if (!path) throw new UserError(`${cmd} is not installed: run \`apt-get install ${pkg}\` on the agent host.`);
  return path;
}

export interface TcpdumpArgs {
  readonly tcpdump?: string;
  /** Capture inside this network namespace (nsfs path). */
  readonly netnsPath?: string;
  readonly snaplen: number;
  readonly filter: string;
  /** `-` for the descriptor given as stdout, or a file pattern (the pre-trigger ring). */
  readonly write: string;
  readonly extra?: readonly string[];
  /** Stop after this many seconds even if the agent does not (undefined: runs until stopped). */
  readonly limitSec?: number;
}

export function tcpdumpArgv(a: TcpdumpArgs): string[] {
  const tcpdump = need(a.tcpdump ?? 'tcpdump', 'tcpdump');
  const setpriv = need('setpriv', 'util-linux');
  // -Z root: without it tcpdump switches to user tcpdump, and a change of user clears the parent-death signal.
  const cmd = [tcpdump, '-i', 'any', '-n', '-U', '-Z', 'root', '-s', String(a.snaplen), ...(a.extra ?? []), '-w', a.write, a.filter];
  const inner = [setpriv, '--pdeathsig', 'KILL', '--', ...(a.netnsPath ? [need('nsenter', 'util-linux'), `--net=${a.netnsPath}`, '--'] : []), ...cmd];
  if (a.limitSec === undefined) return inner;
  const timeout = need('timeout', 'coreutils');
  const limit = String(a.limitSec + SUPERVISOR_GRACE_SEC);
  return [setpriv, '--pdeathsig', 'KILL', '--', timeout, '-s', 'INT', '-k', String(SUPERVISOR_GRACE_SEC), limit, ...inner];
}

export interface Tcpdump {
  readonly child: ChildProcess;
  /** tcpdump's last line on stderr, for saying why it stopped. */
  lastWords(): string;
}

/** Spawns tcpdump and resolves once it says it is listening (packets from then on are kept). */
export function spawnTcpdump(argv: readonly string[], stdout: number | 'ignore'): Promise<Tcpdump> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', stdout, 'pipe'] });
    let err = '';
    let listening = false;
    const lastWords = () => err.trim().split('\n').pop() ?? '';
    child.stderr!.on('data', (d: Buffer) => {
      // Only the tail is kept: a long capture must not grow this string.
      err = (err + d.toString()).slice(-2000);
      if (!listening && /listening on/.test(err)) {
        listening = true;
        resolve({ child, lastWords });
      }
    });
    child.once('error', (e) => reject(new UserError(`cannot start tcpdump: ${e.message}.`)));
    child.once('exit', (code) => {
      if (!listening) reject(new UserError(`tcpdump stopped at once (exit ${code}): ${lastWords()}`));
    });
  });
}
