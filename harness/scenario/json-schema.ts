import { z } from 'zod';
import {
  crashStatesArgs,
  holdArgs,
  killPointSchemas,
  pointScalarKey,
  powerLossArgs,
  scenarioTop,
  stepScalarKey,
  stepSchemas,
} from './schema.ts';

/**
 * The scenario file format as a JSON Schema (draft 2020-12), built from the
 * zod schemas the parser checks with, so an editor (yaml-language-server)
 * completes and checks what `qcrash run` accepts. The parser reads steps and
 * kill points as keywords (`- sync`, `- migrate: /f`, `- migrate: {paths: ...}`)
 * and picks the schema by keyword: this assembles the same choice per keyword.
 * Checks the schema cannot say (a kill point naming an unknown step, a recipe
 * path that is not in the image) stay the parser's.
 */
type JsonSchema = Record<string, unknown>;

/** The arguments as written (zod's input side: before defaults and transforms). */
function inputSchema(s: z.ZodType): JsonSchema {
  const { $schema: _drop, ...rest } = z.toJSONSchema(s, { io: 'input', unrepresentable: 'any' }) as JsonSchema;
  return rest;
}

/** What a keyword's value may be: its argument map, the bare scalar it abbreviates, or nothing. */
function keywordValue(args: z.ZodType, scalarKey: string | undefined): JsonSchema {
  const map = inputSchema(args);
  const forms: JsonSchema[] = [map, { type: 'null' }];
  const props = map.properties as Record<string, JsonSchema> | undefined;
  if (scalarKey && props?.[scalarKey]) forms.push(props[scalarKey]);
  return { anyOf: forms };
}

/** An item of a keyword list: a bare keyword where no argument is needed, or a one-key map. */
function keywordItems(table: Record<string, z.ZodType>, scalarKeys: Partial<Record<string, string>>, what: string): JsonSchema {
  const bare = Object.keys(table).filter((k) => table[k]!.safeParse({}).success);
  const maps = Object.entries(table).map(([k, s]) => ({
    type: 'object',
    properties: { [k]: keywordValue(s, scalarKeys[k]) },
    required: [k],
    additionalProperties: false,
  }));
  return {
    description: `a ${what}: a keyword (${bare.join(', ')}) or a one-key map such as { ${Object.keys(table)[0]}: ... }`,
    anyOf: [{ enum: bare }, ...maps],
  };
}

function crashStatesSchema(): JsonSchema {
  const s = inputSchema(crashStatesArgs);
  const props = { ...(s.properties as Record<string, JsonSchema>) };
  props['power-loss'] = { anyOf: [{ const: 'none' }, { const: false }, { type: 'null' }, inputSchema(powerLossArgs)] };
  return { ...s, properties: props };
}

export function scenarioJsonSchema(): JsonSchema {
  const top = inputSchema(scenarioTop);
  const props = { ...(top.properties as Record<string, JsonSchema>) };
  props.steps = { type: 'array', minItems: 1, items: keywordItems(stepSchemas, stepScalarKey, 'step') };
  props.kill = { type: 'array', minItems: 1, items: keywordItems(killPointSchemas, pointScalarKey, 'kill point') };
  props['crash-states'] = crashStatesSchema();
  props.hold = inputSchema(holdArgs);
  return {
    $schema: 'https://json-schema.org/draft/2020-12/schema',
    title: 'qcrash scenario',
    description:
      'A qcrash scenario file (scenarios/*.yaml): an image, the steps the guest runs, and where crash states come from.',
    ...top,
    properties: props,
  };
}
