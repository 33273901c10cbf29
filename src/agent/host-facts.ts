/** Host facts (src/host) in the API's shape: flat maps a client can show without knowing every field. */
import type { HostFacts } from '../generated/wstrace/v1/tracer.js';
import { loadBinding } from '../kernel/index.js';
import { readHostFacts, SYSCTL_FILES, TCP_MEM_FILE, type HostFacts as Facts, type SysctlKey } from '../host/index.js';

function dotted(path: string): string {
  return path.replace('/proc/sys/', '').replaceAll('/', '.');
}

function text(v: unknown): string {
  if (v === undefined) return '';
  if (typeof v === 'object' && v !== null) return Object.values(v).join(' ');
  return String(v);
}

export function hostFactsToProto(f: Facts): HostFacts {
  const sockstat: Record<string, number> = {};
  for (const [proto, fields] of Object.entries(f.sockstat.lines)) {
    for (const [k, v] of Object.entries(fields)) sockstat[`${proto}.${k}`] = v;
  }
  const sysctls: Record<string, string> = {};
  for (const key of Object.keys(SYSCTL_FILES) as SysctlKey[]) sysctls[dotted(SYSCTL_FILES[key])] = text(f.sysctls[key]);
  if (f.sysctls.tcpMem) sysctls[dotted(TCP_MEM_FILE)] = text(f.sysctls.tcpMem);
  return { mib: { ...f.mibFlat }, sockstat, sysctls };
}

export async function readHostFactsProto(netnsPath: string | undefined): Promise<HostFacts> {
  return hostFactsToProto(await readHostFacts(netnsPath ? { netns: netnsPath, binding: loadBinding() } : {}));
}
