/**
 * Where captures are written, trusted only while root alone can change it:
 * the directory owned by root and private, every parent owned by root and
 * writable by no one else (a sticky parent such as /tmp is fine: others
 * cannot rename root's entries in it). Files are created without following
 * links and never over something already there, so a link planted at the
 * next capture's name cannot redirect a root write.
 */
import { chmodSync, closeSync, constants, lstatSync, mkdirSync, openSync, realpathSync, renameSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { UserError } from '../protocol/errors.js';

const EXCLUSIVE = constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY | constants.O_NOFOLLOW;

function owner(): number {
  return process.geteuid?.() ?? 0;
}

function mode(m: number): string {
  return (m & 0o7777).toString(8).padStart(4, '0');
}

/** Every parent of `dir` must be changeable by root only, or sticky (others cannot swap root's entries). */
function checkParents(dir: string): void {
  let at = realpathSync(dirname(resolve(dir)));
  for (;;) {
    const st = statSync(at);
    if (st.uid !== owner() || ((st.mode & 0o022) !== 0 && (st.mode & 0o1000) === 0)) {
      throw new UserError(
        `the captures directory ${dir} is inside ${at} (uid ${st.uid}, mode ${mode(st.mode)}), which a user other than root can change: give --captures a directory under root-owned parents.`,
      );
    }
    const up = dirname(at);
    if (up === at) return;
    at = up;
  }
}

/**
 * Checks the captures directory and makes it private. A missing one is made
 * 0700 when `create` is set (else left for later); one owned by someone else
 * is refused; one others may write is refused unless `fixable` (the default
 * directory, which root alone is expected to own), then it is made 0700.
 * Throws a UserError that names the fix.
 */
export function secureDir(dir: string, opts: { create: boolean; fixable: boolean }): void {
  let st;
  try {
    st = lstatSync(dir);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT') throw new UserError(`cannot use the captures directory ${dir}: ${code ?? String(err)}.`);
    if (!opts.create) return;
    try {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
    } catch (e) {
      throw new UserError(`cannot make the captures directory ${dir}: ${(e as Error).message}.`);
    }
    st = lstatSync(dir);
  }
  if (st.isSymbolicLink()) throw new UserError(`the captures directory ${dir} is a symbolic link: give --captures the directory itself.`);
  if (!st.isDirectory()) throw new UserError(`the captures directory ${dir} is not a directory: give --captures a directory.`);
  if (st.uid !== owner()) {
    throw new UserError(
      `the captures directory ${dir} is owned by uid ${st.uid}, not root: give --captures a directory only root can write, or \`chown root: ${dir} && chmod 700 ${dir}\`.`,
    );
  }
  if ((st.mode & 0o022) !== 0 && !opts.fixable) {
    throw new UserError(
      `the captures directory ${dir} can be written by other users (mode ${mode(st.mode)}): \`chmod 700 ${dir}\`, or give --captures a private directory.`,
    );
  }
  checkParents(dir);
  // Pcaps hold packet contents: the README promises a root-only directory.
  if ((st.mode & 0o7777) !== 0o700) chmodSync(dir, 0o700);
}

/** Opens a new file for writing, 0600; EEXIST when anything (a file, a link) is already at `path`. */
export function createExclusive(path: string): number {
  return openSync(path, EXCLUSIVE, 0o600);
}

/** Writes a whole new file that must not exist yet; on a failed write the partial file is removed. */
export function writeExclusive(path: string, data: string | Buffer): void {
  const fd = createExclusive(path);
  try {
    const buf = typeof data === 'string' ? Buffer.from(data) : data;
    for (let at = 0; at < buf.length; ) at += writeSync(fd, buf, at, buf.length - at);
  } catch (err) {
    closeSync(fd);
    removeQuietly(path);
    throw err;
  }
  closeSync(fd);
}

/** Replaces `path` with new contents written beside it first: rename swaps the entry, it never follows a link. */
export function replaceFile(path: string, data: Buffer): void {
  const tmp = `${path}.new`;
  writeExclusive(tmp, data);
  try {
    renameSync(tmp, path);
  } catch (err) {
    removeQuietly(tmp);
    throw err;
  }
}

function removeQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // already gone: nothing of ours is left
  }
}
