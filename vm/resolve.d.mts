/** Types for vm/resolve.mjs (plain JavaScript so vm/fetch.sh needs only node). */

/** One kernel series of vm/kernels.json. */
export interface KernelSeries {
  /** Suites whose packages may serve the series; the newest across them wins. */
  suites: string[];
  /** Regular expression for the image package name, always matched whole. */
  image: string;
  /** Prefixes of companion packages of the image's ABI, e.g. "linux-modules". */
  with?: string[];
}

export interface AptPackage {
  name: string;
  version: string;
  suite: string;
}

export function compareVersions(a: string, b: string): number;
export function parseMadison(text: string): AptPackage[];
export function resolveSeries(
  id: string,
  series: KernelSeries,
  madison: string,
): { packages: AptPackage[]; skipped: string[] };
