/** Printable addresses from the 16-byte address fields of the records. */
import { AF_INET, AF_INET6 } from './layout.js';

const V4_CACHE_MAX = 4096;
const v4Text = new Map<number, string>();

export function formatAddr(buf: Uint8Array, offset: number, family: number): string {
  if (family === AF_INET) {
    // A storm repeats a handful of addresses: one string each, not one per event.
    const key = ((buf[offset]! << 24) | (buf[offset + 1]! << 16) | (buf[offset + 2]! << 8) | buf[offset + 3]!) >>> 0;
    let text = v4Text.get(key);
    if (text === undefined) {
      text = `${buf[offset]}.${buf[offset + 1]}.${buf[offset + 2]}.${buf[offset + 3]}`;
      if (v4Text.size >= V4_CACHE_MAX) v4Text.clear();
      v4Text.set(key, text);
    }
    return text;
  }
  if (family !== AF_INET6) return '';
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((buf[offset + i] ?? 0) << 8) | (buf[offset + i + 1] ?? 0));
  // IPv4-mapped (::ffff:a.b.c.d), as dual-stack listeners see IPv4 peers.
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) {
    return `::ffff:${buf[offset + 12]}.${buf[offset + 13]}.${buf[offset + 14]}.${buf[offset + 15]}`;
  }
  // RFC 5952: compress the longest run (length >= 2) of zero groups, first one wins.
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(':');
  const head = hex.slice(0, bestStart).join(':');
  const tail = hex.slice(bestStart + bestLen).join(':');
  return `${head}::${tail}`;
}

export function familyName(family: number): 'ipv4' | 'ipv6' {
  return family === AF_INET6 ? 'ipv6' : 'ipv4';
}
