/**
 * One list of closers for everything a composition root acquires. Each
 * resource registers its closer the moment it exists; close() releases them
 * newest first, the same on a failed start as on shutdown, so no path can
 * forget one or release one twice (libbpf-tools' single `cleanup:` label).
 */

type Closer = () => unknown;

export class Teardown {
  private readonly closers: Array<{ readonly name: string; readonly close: Closer }> = [];
  private closing: Promise<void> | undefined;

  /** True once close() has begun. */
  get closed(): boolean {
    return this.closing !== undefined;
  }

  /**
   * Registers the closer of a resource just acquired. After close() began
   * nothing would ever release it, so that is a bug in the caller: thrown.
   */
  add(name: string, close: Closer): void {
    if (this.closing) throw new Error(`${name} was acquired after teardown began`);
    this.closers.push({ name, close });
  }

  /**
   * Runs every closer once, newest first, each after the previous settled.
   * One that throws does not stop the rest; its error is rethrown at the end
   * (several together in an AggregateError). Later calls share the first run.
   */
  close(): Promise<void> {
    if (!this.closing) {
      const newestFirst = this.closers.splice(0).reverse();
      // Started on a later tick, so a closer that calls close() again gets this same promise.
      this.closing = Promise.resolve().then(() => runAll(newestFirst));
    }
    return this.closing;
  }

  /**
   * For a start that failed midway: releases what was acquired and returns
   * the error to throw, the start's own, or an AggregateError with the
   * release failures after it when releasing failed too.
   */
  async failed(cause: unknown): Promise<unknown> {
    try {
      await this.close();
      return cause;
    } catch (err) {
      const released = err instanceof AggregateError ? err.errors : [err];
      const text = cause instanceof Error ? cause.message : String(cause);
      return new AggregateError([cause, ...released], `${text} (and releasing what had started failed: ${messages(released)})`);
    }
  }

}

async function runAll(closers: ReadonlyArray<{ readonly name: string; readonly close: Closer }>): Promise<void> {
  const errors: Error[] = [];
  for (const { name, close } of closers) {
    try {
      await close();
    } catch (err) {
      errors.push(new Error(`closing ${name}: ${messages([err])}`, { cause: err }));
    }
  }
  if (errors.length === 1) throw errors[0];
  if (errors.length > 1) throw new AggregateError(errors, `${errors.length} resources failed to close: ${messages(errors)}`);
}

function messages(errors: readonly unknown[]): string {
  return errors.map((e) => (e instanceof Error ? e.message : String(e))).join('; ');
}
