/**
 * Colour on or off. NO_COLOR (https://no-color.org) turns it off; the `!`
 * markers on crossed limits stay either way, so nothing is said by colour alone.
 */
import { createContext, useContext } from 'react';
import type { Level } from '../aggregate/index.js';

export const ColorContext = createContext<boolean>(true);

export function useColor(): boolean {
  return useContext(ColorContext);
}

/** Whether to use colour when the caller did not say: NO_COLOR set (to anything) means no. */
export function colorFromEnv(env: NodeJS.ProcessEnv = process.env): boolean {
  return env.NO_COLOR === undefined || env.NO_COLOR === '';
}

export function levelColor(level: Level | undefined, color: boolean): string | undefined {
  if (!color) return undefined;
  if (level === 'over') return 'red';
  if (level === 'warn') return 'yellow';
  return undefined;
}
