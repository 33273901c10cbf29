/**
 * One teardown list: closers run newest first, once, all of them even when
 * one throws; and a real agent whose start fails midway leaves no BPF
 * program loaded and no socket file behind.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAgent } from '../src/agent/agent.js';
import { Teardown } from '../src/agent/teardown.js';
import { loadBinding, type Binding } from '../src/kernel/index.js';
import { UserError } from '../src/protocol/errors.js';
import { describeKernel, loadedProgramIds, waitProgramsGone } from './helpers/kernel.js';

describe('Teardown', () => {
  it('releases newest first', async () => {
    const order: string[] = [];
    const t = new Teardown();
    for (const name of ['socket', 'tracer', 'server']) t.add(name, () => order.push(name));
    await t.close();
    expect(order).toEqual(['server', 'tracer', 'socket']);
  });

  it('waits for an async closer before the next one', async () => {
    const order: string[] = [];
    const t = new Teardown();
    t.add('first', () => order.push('first'));
    t.add('slow', async () => {
      await new Promise((r) => setImmediate(r));
      order.push('slow');
    });
    await t.close();
    expect(order).toEqual(['slow', 'first']);
  });

  it('runs each closer once, whether close() is called twice or concurrently', async () => {
    let runs = 0;
    const t = new Teardown();
    t.add('tracer', () => runs++);
    const [a, b] = [t.close(), t.close()];
    expect(a).toBe(b);
    await Promise.all([a, b]);
    await t.close();
    expect(runs).toBe(1);
  });

  it('a closer that calls close() again gets the run already under way', async () => {
    const t = new Teardown();
    let inner: Promise<void> | undefined;
    t.add('reentrant', () => {
      inner = t.close();
    });
    const outer = t.close();
    await outer;
    expect(inner).toBe(outer);
  });

  it('a closer that throws does not stop the others, and its error comes out naming it', async () => {
    const ran: string[] = [];
    const t = new Teardown();
    t.add('tracer', () => ran.push('tracer'));
    t.add('metrics server', () => {
      throw new Error('EBADF');
    });
    t.add('socket file', () => ran.push('socket file'));
    const err = await t.close().then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(ran).toEqual(['socket file', 'tracer']);
    expect(err?.message).toBe('closing metrics server: EBADF');
    expect((err?.cause as Error).message).toBe('EBADF');
    // The same outcome for a later caller, and nothing runs again.
    await expect(t.close()).rejects.toBe(err);
    expect(ran).toHaveLength(2);
  });

  it('several failures come out together', async () => {
    const t = new Teardown();
    t.add('a', () => {
      throw new Error('one');
    });
    t.add('b', () => Promise.reject(new Error('two')));
    const err = (await t.close().catch((e: unknown) => e)) as AggregateError;
    expect(err).toBeInstanceOf(AggregateError);
    expect(err.errors.map((e: Error) => e.message)).toEqual(['closing b: two', 'closing a: one']);
  });

  it('refuses a resource acquired after teardown began: nothing would release it', async () => {
    const t = new Teardown();
    await t.close();
    expect(() => t.add('late', () => undefined)).toThrow(/late was acquired after teardown began/);
  });

  /** A start that acquires `names` in order and then fails at `failAt`. */
  async function failingStart(t: Teardown, names: string[], released: string[], failAt: string): Promise<void> {
    for (const name of names) {
      if (name === failAt) throw new UserError(`cannot start ${name}.`);
      t.add(name, () => released.push(name));
    }
  }

  it('a start that fails midway releases what it acquired so far, in reverse, and throws its own error', async () => {
    const released: string[] = [];
    const t = new Teardown();
    const cause = await failingStart(t, ['tracer', 'captures', 'server', 'metrics'], released, 'server').catch((e: unknown) => e);
    const thrown = await t.failed(cause);
    expect(thrown).toBe(cause);
    expect(thrown).toBeInstanceOf(UserError);
    expect(released).toEqual(['captures', 'tracer']);
  });

  it('when releasing after a failed start fails too, both are reported, the start error first', async () => {
    const t = new Teardown();
    t.add('tracer', () => {
      throw new Error('busy');
    });
    const cause = new UserError('cannot serve metrics on 127.0.0.1:9: the port is in use.');
    const thrown = (await t.failed(cause)) as AggregateError;
    expect(thrown).toBeInstanceOf(AggregateError);
    expect(thrown.errors[0]).toBe(cause);
    expect(thrown.message).toBe(`${cause.message} (and releasing what had started failed: closing tracer: busy)`);
  });
});

describeKernel('agent start that fails midway (real BPF)', () => {
  let dir: string;
  let busy: Server;
  let busyPort: number;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'wst-teardown-'));
    busy = createServer();
    await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
    busyPort = (busy.address() as { port: number }).port;
  });

  afterAll(async () => {
    await new Promise((r) => busy?.close(r));
    rmSync(dir, { recursive: true, force: true });
  });

  /** The real addon, noting the programs of each tracer it opens. */
  function watchedBinding(): { binding: Binding; programIds: number[] } {
    const real = loadBinding();
    const programIds: number[] = [];
    const binding: Binding = {
      ...real,
      open(options) {
        const native = real.open(options);
        programIds.push(...native.programIds());
        return native;
      },
    };
    return { binding, programIds };
  }

  it('metrics port in use after the tracer attached: the error says so, no program stays loaded, no socket file', async () => {
    const path = join(dir, 'fail', 'agent.sock');
    const { binding, programIds } = watchedBinding();
    await expect(
      startAgent({ listen: { kind: 'unix', path }, metrics: `127.0.0.1:${busyPort}`, tracer: { binding, resolveOwners: false } }),
    ).rejects.toThrow(new UserError(`cannot serve metrics on 127.0.0.1:${busyPort}: the port is in use.`));
    // The tracer had attached (so there was something to release) ...
    expect(programIds.length).toBeGreaterThan(0);
    // ... and all of it is gone.
    expect(await waitProgramsGone(programIds)).toEqual([]);
    expect(existsSync(path)).toBe(false);
  });

  it('close() called again while closing waits for the one release', async () => {
    const path = join(dir, 'ok', 'agent.sock');
    const { binding, programIds } = watchedBinding();
    const agent = await startAgent({ listen: { kind: 'unix', path }, tracer: { binding, resolveOwners: false } });
    expect(existsSync(path)).toBe(true);
    const loaded = loadedProgramIds();
    expect(programIds.every((id) => loaded.has(id))).toBe(true);
    const first = agent.close('first');
    // The second call waits for the same run: the tracer, released last, is closed when it resolves.
    await agent.close('second');
    expect(agent.tracer.closed).toBe(true);
    await first;
    expect(await waitProgramsGone(programIds)).toEqual([]);
    expect(existsSync(path)).toBe(false);
  });
});
