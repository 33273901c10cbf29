// Picks the newest Debian kernel of one series (vm/kernels.json) from apt's
// own index, so the matrix never names a package the archive has dropped.
// Pure functions, plus a CLI for vm/fetch.sh (plain node: fetch.sh runs
// before anything is installed):
//   apt-cache madison $(apt-cache pkgnames linux-) | node vm/resolve.mjs vm/kernels.json 6.1
// prints one "name=version suite" line per package to download, the image
// first; on failure one sentence on stderr and exit 1.
import { readFileSync, realpathSync } from 'node:fs';
import process from 'node:process';
import { fileURLToPath } from 'node:url';

/** dpkg's ordering of one non-digit character: '~' before the end, letters before the rest. */
function order(c) {
  if (c === undefined) return 0;
  if (c === '~') return -1;
  if (/[A-Za-z]/.test(c)) return c.charCodeAt(0);
  return c.charCodeAt(0) + 256;
}

const isDigit = (c) => c !== undefined && c >= '0' && c <= '9';

/** dpkg's verrevcmp: alternating non-digit and numeric runs. */
function verrevcmp(a, b) {
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    while ((i < a.length && !isDigit(a[i])) || (j < b.length && !isDigit(b[j]))) {
      const ac = isDigit(a[i]) ? 0 : order(a[i]);
      const bc = isDigit(b[j]) ? 0 : order(b[j]);
      if (ac !== bc) return ac - bc;
      i++;
      j++;
    }
    while (a[i] === '0') i++;
    while (b[j] === '0') j++;
    let firstDiff = 0;
    while (isDigit(a[i]) && isDigit(b[j])) {
      if (!firstDiff) firstDiff = a.charCodeAt(i) - b.charCodeAt(j);
      i++;
      j++;
    }
    if (isDigit(a[i])) return 1;
    if (isDigit(b[j])) return -1;
    if (firstDiff) return firstDiff;
  }
  return 0;
}

function splitVersion(v) {
  const m = /^([0-9]+):(.*)$/.exec(v);
  const epoch = m ? Number(m[1]) : 0;
  const rest = m ? m[2] : v;
  const dash = rest.lastIndexOf('-');
  return dash >= 0 ? [epoch, rest.slice(0, dash), rest.slice(dash + 1)] : [epoch, rest, ''];
}

/** `dpkg --compare-versions a lt b` as a sort comparator (negative, zero, positive). */
export function compareVersions(a, b) {
  const [ea, ua, ra] = splitVersion(a);
  const [eb, ub, rb] = splitVersion(b);
  if (ea !== eb) return Math.sign(ea - eb);
  return Math.sign(verrevcmp(ua, ub) || verrevcmp(ra, rb));
}

/**
 * Rows of `apt-cache madison` output ("name | version | URI suite/component arch Packages").
 * Source-package lines and anything else unexpected are skipped.
 */
export function parseMadison(text) {
  const rows = [];
  for (const line of text.split('\n')) {
    const cols = line.split('|').map((s) => s.trim());
    if (cols.length !== 3) continue;
    const where = /(\S+)\/\S+ \S+ Packages$/.exec(cols[2]);
    if (!where || !cols[0] || !cols[1]) continue;
    rows.push({ name: cols[0], version: cols[1], suite: where[1] });
  }
  return rows;
}

/**
 * The packages to fetch for kernel series `id`: the newest image whose name
 * matches `series.image` in one of `series.suites`, then each `series.with`
 * companion of the same ABI and version (7.x splits vmlinuz and modules out
 * of linux-image). An image whose companions are missing (a mirror caught
 * mid-sync) is passed over for the next newest and named in `skipped`.
 * Throws an Error with one sentence when nothing fits.
 */
export function resolveSeries(id, series, madison) {
  const suites = series.suites ?? [];
  const rows = parseMadison(madison).filter((r) => suites.includes(r.suite));
  // Anchored whatever the file says, so a -cloud, -rt, -dbg or -unsigned
  // sibling never matches a pattern that forgot its "$".
  const image = new RegExp(`^(?:${series.image})$`);
  const candidates = rows
    .filter((r) => r.name.startsWith('linux-image-') && image.test(r.name))
    .sort((a, b) => compareVersions(b.version, a.version));
  if (candidates.length === 0) {
    throw new Error(`kernel series ${id}: no package in ${suites.join(', ') || '(no suites)'} matches ${series.image}`);
  }
  const skipped = [];
  let newestMissing;
  for (const img of candidates) {
    const abi = img.name.slice('linux-image-'.length);
    const packages = [img];
    const missing = [];
    for (const prefix of series.with ?? []) {
      const name = `${prefix}-${abi}`;
      const found = rows.find((r) => r.name === name && r.version === img.version);
      if (found) packages.push(found);
      else missing.push(`${name} ${img.version}`);
    }
    if (missing.length === 0) return { packages, skipped };
    newestMissing ??= missing;
    // madison lists a version once per suite that has it: name it once.
    const label = `${img.name} ${img.version}`;
    if (!skipped.some((s) => s.startsWith(`${label} `))) skipped.push(`${label} (no ${missing.join(', ')})`);
  }
  throw new Error(
    `kernel series ${id}: ${suites.join(', ')} has ${candidates[0].name} ${candidates[0].version} but not ` +
      `${newestMissing.join(', ')}, and no older image there is complete either`,
  );
}

function main(argv) {
  const [file, id] = argv;
  if (!file || !id) {
    process.stderr.write('usage: node vm/resolve.mjs KERNELS.JSON SERIES < apt-cache-madison-output\n');
    return 2;
  }
  const all = JSON.parse(readFileSync(file, 'utf8'));
  const series = all[id];
  if (!series) {
    process.stderr.write(`no kernel series "${id}" in ${file} (it has ${Object.keys(all).join(', ')})\n`);
    return 2;
  }
  try {
    const { packages, skipped } = resolveSeries(id, series, readFileSync(0, 'utf8'));
    for (const s of skipped) process.stderr.write(`kernel series ${id}: passing over ${s}\n`);
    process.stdout.write(packages.map((p) => `${p.name}=${p.version} ${p.suite}\n`).join(''));
    return 0;
  } catch (err) {
    process.stderr.write(`${err.message}\n`);
    return 1;
  }
}

if (process.argv[1] && realpathSync(process.argv[1]) === realpathSync(fileURLToPath(import.meta.url))) {
  process.exitCode = main(process.argv.slice(2));
}
