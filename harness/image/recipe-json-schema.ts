import { z } from 'zod';
import { recipeSchema } from './recipe.ts';

/** The recipe file format as a JSON Schema (draft 2020-12), from the zod schema parseRecipe checks with. */
export function recipeJsonSchema(): Record<string, unknown> {
  const { $schema: _drop, ...rest } = z.toJSONSchema(recipeSchema, { io: 'input', unrepresentable: 'any' }) as Record<
    string,
    unknown
  >;
  return {
    $schema: 'https://json-schema.org/draft/2020-12/schema',
    title: 'qcrash image recipe',
    description: 'A qcrash image recipe (vm-images/recipes/*.yaml): the filesystem and the block-mapped entries it holds.',
    ...rest,
  };
}
