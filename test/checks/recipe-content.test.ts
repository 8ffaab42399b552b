import t from 'tap';
import { listRecipeNames, loadRecipe } from '../../harness/image/recipe.ts';
import { buildImage } from '../../harness/image/build.ts';
import { recipeFile } from '../../harness/image/recipe-content.ts';
import { sha256 } from '../../harness/util/hash.ts';

// The content oracle regenerates a recipe file's original bytes on the host
// (a write into it is checked against them): they must be the bytes the
// built image holds, for every regular file of every shipped recipe.
for (const name of await listRecipeNames()) {
  t.test(`recipe ${name}: every file regenerates to its manifest's sha256`, async (t) => {
    const recipe = await loadRecipe(name);
    const { manifest } = await buildImage(recipe);
    const files = manifest.entries.filter((e) => e.type === 'file');
    t.ok(files.length > 0, 'the recipe has regular files');
    const wrong = files.filter((e) => {
      const f = recipeFile(recipe, e.path);
      return !f || f.bytes.length !== e.size || sha256(f.bytes) !== e.sha256;
    });
    t.same(
      wrong.map((e) => e.path),
      [],
      `${files.length} files`,
    );
    t.equal(recipeFile(recipe, '/no/such/file'), undefined);
  });
}
