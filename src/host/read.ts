/**
 * The one I/O seam of src/host: every fact is a batch of file reads, so a
 * namespace switch (a thread in the addon) is paid once per batch, and tests
 * hand in a fake reader instead of root and a kernel.
 */
import { readFile } from 'node:fs/promises';

/** Reads each path and resolves with their texts, in order; rejects on the first failure. */
export type ReadFiles = (paths: string[]) => Promise<string[]>;

/** The process's own network namespace (the one /proc/self/net shows). */
export const readCurrentNetns: ReadFiles = (paths) => Promise.all(paths.map((path) => readFile(path, 'utf8')));

/** What can read files from inside another network namespace: the addon (a thread that calls setns). */
export interface NetnsFileReader {
  readFilesInNetns(nsPath: string, paths: string[]): Promise<string[]>;
}

/**
 * Files as seen from inside the network namespace at nsPath (/run/netns/NAME,
 * /proc/PID/ns/net): /proc/sys/net and /proc/net answer for the reader's
 * namespace, so the read happens on a thread that entered it.
 */
export function netnsReader(binding: NetnsFileReader, nsPath: string): ReadFiles {
  return (paths) => binding.readFilesInNetns(nsPath, paths);
}

/** True for "no such file": both fs and the addon put the errno name in `code`. */
export function isMissingFile(err: unknown): boolean {
  return typeof err === 'object' && err !== null && (err as { code?: unknown }).code === 'ENOENT';
}

/** Reads one file, or undefined when it does not exist in that view. */
export async function readOptional(read: ReadFiles, path: string): Promise<string | undefined> {
  try {
    const [text] = await read([path]);
    return text;
  } catch (err) {
    if (isMissingFile(err)) return undefined;
    throw err;
  }
}
