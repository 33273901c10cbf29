/**
 * `wstrace --version` (-V): which build a host runs. An operator comparing two
 * hosts reads the package version, whether the addon is the prebuilt one the
 * package shipped or one compiled on the host, the libbpf it runs, and a hash
 * of each BPF object compiled into it (the same as `sha256sum` of the .bpf.o
 * it was built from: equal hashes, same programs loaded).
 */
import type { Writable } from 'node:stream';
import { VERSION } from '../agent/version.js';
import { addonBuild, type AddonBuild } from '../kernel/index.js';
import { UserError } from '../protocol/errors.js';

/** The lines --version prints, from what the loaded addon reports. */
export function versionLines(version: string, build: AddonBuild, node: string): string[] {
  const origin =
    build.origin === 'prebuilt'
      ? 'prebuilt (shipped in the package, libbpf linked into it)'
      : "source build (compiled on this host, the system's shared libbpf)";
  return [
    `wstrace ${version}`,
    `addon: ${origin}`,
    `  ${build.path}`,
    `libbpf: ${build.libbpf}`,
    ...build.bpfObjects.map((o) => `bpf object ${o.name}: sha256 ${o.sha256} (${o.bytes} bytes)`),
    `node: ${node}`,
  ];
}

export function runVersion(out: Writable): number {
  let build: AddonBuild;
  try {
    build = addonBuild();
  } catch (err) {
    // The package version is known even when the addon cannot load: say both.
    out.write(`wstrace ${VERSION}\n`);
    throw err instanceof UserError ? err : new UserError((err as Error).message);
  }
  out.write(`${versionLines(VERSION, build, process.version).join('\n')}\n`);
  return 0;
}
