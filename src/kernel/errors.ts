/** Why BPF may not load here: capabilities, said as the fix. */
export const NEEDS_PRIVILEGE =
  'not permitted to load BPF programs: run wstrace with sudo (or grant it CAP_BPF and CAP_PERFMON).';

// Capability bits (include/uapi/linux/capability.h).
const CAP_SYS_ADMIN = 21n;
const CAP_PERFMON = 38n;
const CAP_BPF = 39n;

/**
 * True when the effective capability mask (CapEff, hex) can load tracing BPF.
 * Capabilities, not the uid, decide: root without them is refused too.
 */
export function canLoadBpf(capEffHex: string): boolean {
  let caps: bigint;
  try {
    caps = BigInt(`0x${capEffHex.trim()}`);
  } catch {
    return false;
  }
  const has = (bit: bigint) => (caps & (1n << bit)) !== 0n;
  return has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON));
}
