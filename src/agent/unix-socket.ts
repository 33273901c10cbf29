/** The agent's unix socket: a root-only directory, and no second agent on the same path. */
import { chmodSync, lstatSync, mkdirSync, statSync, unlinkSync } from 'node:fs';
import { connect } from 'node:net';
import { dirname } from 'node:path';
import { UserError } from '../protocol/errors.js';

/** True when something accepts connections on the unix socket at `path`. */
function socketIsLive(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/**
 * Makes the socket's directory (0700 when we create it), refuses a live
 * socket, and removes a stale one. Anything that is not a socket is left alone.
 */
export async function prepareUnixSocket(path: string): Promise<void> {
  const dir = dirname(path);
  try {
    statSync(dir);
  } catch {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    chmodSync(dir, 0o700);
  }
  let st;
  try {
    st = lstatSync(path);
  } catch {
    return;
  }
  if (!st.isSocket()) throw new UserError(`${path} exists and is not a socket: remove it or choose another --listen path.`);
  if (await socketIsLive(path)) {
    throw new UserError(`another agent is already listening on ${path}: stop it first, or choose another --listen path.`);
  }
  unlinkSync(path);
}
