/** Printable addresses from the 16-byte address fields of the records. */
import { AF_INET, AF_INET6 } from './layout.js';

const V4_CACHE_MAX = 4096;
const v4Text = new Map<number, string>();
const V6_CACHE_MAX = 4096;

/** An IPv6 address's text, with the four words that key it (a hash of them may collide). */
interface V6Text {
  readonly w0: number;
  readonly w1: number;
  readonly w2: number;
  readonly w3: number;
  readonly text: string;
}
const v6Text = new Map<number, V6Text>();

function word(buf: Uint8Array, at: number): number {
  return ((buf[at]! << 24) | (buf[at + 1]! << 16) | (buf[at + 2]! << 8) | buf[at + 3]!) >>> 0;
}

export function formatAddr(buf: Uint8Array, offset: number, family: number): string {
  if (family === AF_INET) {
    // A storm repeats a handful of addresses: one string each, not one per event.
    const key = word(buf, offset);
    let text = v4Text.get(key);
    if (text === undefined) {
      text = `${buf[offset]}.${buf[offset + 1]}.${buf[offset + 2]}.${buf[offset + 3]}`;
      if (v4Text.size >= V4_CACHE_MAX) v4Text.clear();
      v4Text.set(key, text);
    }
    return text;
  }
  if (family !== AF_INET6) return '';
  if (offset + 16 > buf.length) return formatV6(buf, offset);
  // The same few peers repeat in a storm: found by their words without making a string.
  const w0 = word(buf, offset);
  const w1 = word(buf, offset + 4);
  const w2 = word(buf, offset + 8);
  const w3 = word(buf, offset + 12);
  const key = Math.imul(Math.imul(Math.imul(w0, 31) ^ w1, 31) ^ w2, 31) ^ w3;
  const hit = v6Text.get(key);
  if (hit && hit.w0 === w0 && hit.w1 === w1 && hit.w2 === w2 && hit.w3 === w3) return hit.text;
  const text = formatV6(buf, offset);
  if (v6Text.size >= V6_CACHE_MAX) v6Text.clear();
  v6Text.set(key, { w0, w1, w2, w3, text });
  return text;
}

function formatV6(buf: Uint8Array, offset: number): string {
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

/** An address as the records hold it: the family and 16 bytes (IPv4 in the first four). */
export interface AddressBytes {
  /** AF_INET, AF_INET6, or 0 for the empty text a record of another family prints as. */
  readonly family: number;
  readonly bytes: Uint8Array;
}

/**
 * The record bytes that formatAddr prints as exactly `text`, or undefined when
 * it prints no address that way (a typo, a leading zero, an uncompressed IPv6
 * form): then no event's address equals the text. Comparing these bytes is
 * comparing the printed text, without printing.
 */
export function parseAddress(text: string): AddressBytes | undefined {
  const bytes = new Uint8Array(16);
  if (text === '') return { family: 0, bytes };
  const family = text.includes(':') ? AF_INET6 : AF_INET;
  const ok = family === AF_INET ? parseV4(text, bytes, 0) : parseV6(text, bytes);
  // The round trip is the proof: formatAddr prints one text per address.
  return ok && formatAddr(bytes, 0, family) === text ? { family, bytes } : undefined;
}

function parseV4(text: string, out: Uint8Array, at: number): boolean {
  const parts = text.split('.');
  if (parts.length !== 4) return false;
  for (let i = 0; i < 4; i++) {
    if (!/^\d{1,3}$/.test(parts[i]!) || Number(parts[i]) > 255) return false;
    out[at + i] = Number(parts[i]);
  }
  return true;
}

function parseV6(text: string, out: Uint8Array): boolean {
  const halves = text.split('::');
  if (halves.length > 2) return false;
  const groups = (s: string): number[] | undefined => {
    if (s === '') return [];
    const g: number[] = [];
    const parts = s.split(':');
    for (let i = 0; i < parts.length; i++) {
      const p = parts[i]!;
      if (i === parts.length - 1 && p.includes('.')) {
        const quad = new Uint8Array(4);
        if (!parseV4(p, quad, 0)) return undefined;
        g.push((quad[0]! << 8) | quad[1]!, (quad[2]! << 8) | quad[3]!);
      } else if (/^[0-9a-f]{1,4}$/.test(p)) {
        g.push(parseInt(p, 16));
      } else {
        return undefined;
      }
    }
    return g;
  };
  const head = groups(halves[0]!);
  const tail = halves.length === 2 ? groups(halves[1]!) : [];
  if (!head || !tail) return false;
  const fill = 8 - head.length - tail.length;
  if (halves.length === 2 ? fill < 1 : fill !== 0) return false;
  const all = [...head, ...new Array<number>(fill).fill(0), ...tail];
  for (let i = 0; i < 8; i++) {
    out[2 * i] = all[i]! >> 8;
    out[2 * i + 1] = all[i]! & 0xff;
  }
  return true;
}
