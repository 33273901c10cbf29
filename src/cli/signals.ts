/** How a command that runs until stopped learns it should stop. */

/** Resolves at the first SIGINT or SIGTERM (Ctrl-C, `kill`, systemd stop). */
export function signalStop(): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      process.off('SIGINT', done);
      process.off('SIGTERM', done);
      resolve();
    };
    process.on('SIGINT', done);
    process.on('SIGTERM', done);
  });
}
