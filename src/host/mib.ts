/**
 * SNMP MIB counters from /proc/net/netstat and /proc/net/snmp: the kernel's
 * own tallies (ListenOverflows, OutRsts, TW, TCPTimeWaitOverflow, ...), the
 * ground truth wstrace's numbers are checked against.
 *
 * Both files are pairs of lines, "Table: Name Name ..." then
 * "Table: value value ...". Values are parsed as JS numbers: exact up to 2^53,
 * far beyond any packet or byte count a host reaches between reboots.
 */

/** Table name → counter name → value, e.g. mib.TcpExt.ListenOverflows. */
export type MibTables = Record<string, Record<string, number>>;

/** nstat-style flat names: TcpExtListenOverflows, TcpOutRsts, IpExtInOctets. */
export type MibFlat = Record<string, number>;

export const MIB_PATHS = ['/proc/net/netstat', '/proc/net/snmp'] as const;

/**
 * Parses one MIB file. `source` names the file in errors. Throws when a header
 * has no value line, the lines disagree on table or count, or a value is not
 * an integer: a silent misalignment would attribute one counter's value to
 * its neighbour.
 */
export function parseMib(text: string, source = 'MIB text'): MibTables {
  const lines = text.split('\n').filter((line) => line.trim() !== '');
  const tables: MibTables = {};
  for (let i = 0; i < lines.length; i += 2) {
    const header = splitLine(lines[i] ?? '', source, i + 1);
    const valueLine = lines[i + 1];
    if (valueLine === undefined) {
      throw new Error(`${source}: line ${i + 1} (${header.table}) has names but no value line after it`);
    }
    const values = splitLine(valueLine, source, i + 2);
    if (values.table !== header.table) {
      throw new Error(
        `${source}: line ${i + 2} is table ${values.table} but the names on line ${i + 1} are for ${header.table}`,
      );
    }
    if (values.fields.length !== header.fields.length) {
      const counts = `${values.fields.length} values for ${header.fields.length} names`;
      throw new Error(`${source}: line ${i + 2} (${header.table}) has ${counts}`);
    }
    const table: Record<string, number> = {};
    header.fields.forEach((name, k) => {
      const raw = values.fields[k] ?? '';
      if (!/^-?\d+$/.test(raw)) {
        throw new Error(`${source}: line ${i + 2} (${header.table}) has "${raw}" for ${name}, not an integer`);
      }
      table[name] = Number(raw);
    });
    tables[header.table] = table;
  }
  return tables;
}

function splitLine(line: string, source: string, lineNo: number): { table: string; fields: string[] } {
  const colon = line.indexOf(':');
  if (colon <= 0) throw new Error(`${source}: line ${lineNo} does not start with "Table:"`);
  return {
    table: line.slice(0, colon).trim(),
    fields: line
      .slice(colon + 1)
      .trim()
      .split(/\s+/)
      .filter((f) => f !== ''),
  };
}

/** Parses /proc/net/netstat and /proc/net/snmp (in MIB_PATHS order) into one set of tables. */
export function parseMibFiles(texts: readonly string[]): MibTables {
  const merged: MibTables = {};
  texts.forEach((text, i) => Object.assign(merged, parseMib(text, MIB_PATHS[i] ?? `MIB file ${i}`)));
  return merged;
}

/** The nstat view: table name glued to counter name (Tcp + OutRsts → TcpOutRsts). */
export function flattenMib(tables: MibTables): MibFlat {
  const flat: MibFlat = {};
  for (const [table, counters] of Object.entries(tables)) {
    for (const [name, value] of Object.entries(counters)) flat[`${table}${name}`] = value;
  }
  return flat;
}

/**
 * after − before for every counter in `after` (a counter new in `after`
 * counts from 0). Gauges such as TcpCurrEstab come out as their change,
 * which is what a delta view of them means.
 */
export function mibDelta(before: MibFlat, after: MibFlat): MibFlat {
  const delta: MibFlat = {};
  for (const [name, value] of Object.entries(after)) delta[name] = value - (before[name] ?? 0);
  return delta;
}
