/**
 * One declaration per flag. A command's options are a zod object whose fields
 * carry their flag spelling and help (`flag()`); nested objects group fields
 * the way the command uses them (`tls: {ca, cert, …}`). From that one schema
 * come the commander options (switch or value, repeatable, default, choices,
 * required) and the typed options the command runs with, so a flag's name,
 * help, validation and type cannot drift apart.
 *
 * Commander only collects the text a user typed; the schema turns it into
 * values, and its first complaint becomes commander's own one-line error.
 */
import { Command, CommanderError, Option } from 'commander';
import { z } from 'zod';

export interface FlagMeta {
  /** As commander spells it: '--json', '--port <n>', '-o, --out <file>'. */
  readonly flags: string;
  readonly help: string;
}

const registry = z.registry<FlagMeta>();

/** `schema` as the flag `meta` describes; each use is its own copy, so one value schema serves many flags. */
export function flag<T extends z.ZodType>(schema: T, meta: FlagMeta): T {
  const copy = schema.clone();
  registry.add(copy as z.ZodType, meta);
  return copy;
}

/** What a command hands to the entry point: the work to run once parsing succeeded. */
export type OnAction = (run: () => Promise<number>) => void;

export interface Flag {
  /** Where the value goes in the options object. */
  readonly path: readonly string[];
  readonly meta: FlagMeta;
  readonly switch: boolean;
  readonly repeatable: boolean;
  readonly required: boolean;
  /** The schema's default, for help to show. */
  readonly fallback?: unknown;
  readonly choices?: readonly string[];
}

/** The parts of zod's schema definition (its documented `_zod.def`) that say what a flag takes. */
type Def = {
  type: string;
  innerType?: z.ZodType;
  in?: z.ZodType;
  defaultValue?: unknown;
  entries?: Record<string, string>;
};
const defOf = (s: z.ZodType) => s._zod.def as unknown as Def;

/** The type a user's text meets first, under optional/default wrappers and transforms. */
function kindOf(schema: z.ZodType): Pick<Flag, 'switch' | 'repeatable' | 'required' | 'fallback' | 'choices'> {
  let s = schema;
  let optional = false;
  let fallback: unknown;
  for (;;) {
    const def = defOf(s);
    if (def.type === 'optional' || def.type === 'default') {
      optional = true;
      if (def.type === 'default' && fallback === undefined) fallback = def.defaultValue;
      s = def.innerType!;
    } else if (def.type === 'pipe') {
      s = def.in!;
    } else {
      return {
        switch: def.type === 'boolean',
        repeatable: def.type === 'array',
        required: !optional,
        ...(fallback !== undefined ? { fallback } : {}),
        ...(def.type === 'enum' ? { choices: Object.values(def.entries!) } : {}),
      };
    }
  }
}

/** Every flag of an options schema, nested groups included, in declaration order. */
export function flagsOf(schema: z.ZodObject, path: readonly string[] = []): Flag[] {
  const out: Flag[] = [];
  for (const [key, field] of Object.entries(schema.shape as Record<string, z.ZodType>)) {
    const meta = registry.get(field);
    if (meta) out.push({ path: [...path, key], meta, ...kindOf(field) });
    else if (defOf(field).type === 'object') out.push(...flagsOf(field as z.ZodObject, [...path, key]));
    else throw new Error(`option ${[...path, key].join('.')} has no flag: declare it with flag()`);
  }
  return out;
}

const collect = (text: string, previous: string[] | undefined) => [...(previous ?? []), text];

function commanderOption(f: Flag): Option {
  const option = new Option(f.meta.flags, f.meta.help);
  if (option.isBoolean() !== f.switch) {
    throw new Error(`${f.meta.flags}: a switch must be a boolean in the schema, and a boolean must be a switch`);
  }
  if (f.repeatable) option.argParser(collect);
  if (f.choices) option.choices(f.choices);
  if (f.required && !f.switch) option.makeOptionMandatory();
  // Shown in help only; the schema's own default is what the command gets.
  if (f.fallback !== undefined && !f.switch && !f.repeatable) option.default(f.fallback);
  return option;
}

interface Registered {
  readonly schema: z.ZodObject;
  readonly flags: ReadonlyArray<{ flag: Flag; option: Option }>;
}
const registered = new WeakMap<Command, Registered>();

function addFlags(cmd: Command, schema: z.ZodObject): void {
  const flags = flagsOf(schema).map((flag) => ({ flag, option: commanderOption(flag) }));
  for (const { option } of flags) cmd.addOption(option);
  registered.set(cmd, { schema, flags });
}

/** The schema a command's flags came from (for tests that hold the two side by side). */
export function schemaOf(cmd: Command): z.ZodObject | undefined {
  return registered.get(cmd)?.schema;
}

function at(root: Record<string, unknown>, path: readonly PropertyKey[]): unknown {
  let v: unknown = root;
  for (const key of path) v = (v as Record<PropertyKey, unknown> | undefined)?.[key];
  return v;
}

/**
 * The parsed command line as the command's typed options. A value the schema
 * rejects ends the run the way commander's own checks do: one line on stderr,
 * then a CommanderError (exit code from the command's exitOverride).
 */
export function optionsOf<S extends z.ZodObject>(cmd: Command, schema: S): z.infer<S> {
  const reg = registered.get(cmd);
  if (reg?.schema !== schema) throw new Error(`${cmd.name()}: these options were not added with addCommand`);
  const raw: Record<string, unknown> = {};
  for (const { flag, option } of reg.flags) {
    let group = raw;
    for (const key of flag.path.slice(0, -1)) group = (group[key] ??= {}) as Record<string, unknown>;
    const name = option.attributeName();
    // A default commander shows in help is not typed input: the schema supplies its own.
    if (cmd.getOptionValueSource(name) === 'default') continue;
    const v: unknown = cmd.getOptionValue(name);
    if (v !== undefined) group[flag.path.at(-1)!] = v;
  }
  const parsed = schema.safeParse(raw);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0]!;
  const owner = reg.flags.find(({ flag }) => flag.path.every((key, i) => issue.path[i] === key));
  if (!owner) cmd.error(`error: ${issue.message}`);
  const given = at(raw, issue.path);
  cmd.error(`error: option '${owner.option.flags}' argument '${typeof given === 'string' ? given : String(given)}' is invalid. ${issue.message}`, {
    code: 'commander.invalidArgument',
  });
}

export interface CommandSpec<S extends z.ZodObject> {
  readonly name: string;
  readonly description: string;
  readonly options: S;
  /** Positional arguments as commander spells them, with their help: ['<file>', 'a recording …']. */
  readonly args?: ReadonlyArray<readonly [string, string]>;
  /** Exit code of bad usage, for a command whose exit 1 already means something else. */
  readonly usageExit?: number;
}

/** Adds one command; `run` gets its typed options and positional arguments once they parsed. */
export function addCommand<S extends z.ZodObject>(
  program: Command,
  spec: CommandSpec<S>,
  onAction: OnAction,
  run: (options: z.infer<S>, args: string[]) => Promise<number> | number,
): Command {
  const cmd = program.command(spec.name).description(spec.description);
  for (const [name, help] of spec.args ?? []) cmd.argument(name, help);
  addFlags(cmd, spec.options);
  const usageExit = spec.usageExit;
  if (usageExit !== undefined) {
    cmd.exitOverride((err) => {
      throw err.exitCode === 0 ? err : new CommanderError(usageExit, err.code, err.message);
    });
  }
  cmd.action(() => {
    const options = optionsOf(cmd, spec.options);
    const args = cmd.processedArgs as string[];
    onAction(async () => run(options, args));
  });
  return cmd;
}
