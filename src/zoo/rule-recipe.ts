/** Zoo cell names: a rule, optionally followed by '+recipe'. */

/**
 * A cell's rule may carry a recipe: 'onnxquant-int8-pot+best' quantizes under the rule, then runs the recipe
 * (see optimise/recipes.ts), so a sweep covers rules × recipes. Published PPQ rows belong to the plain rule.
 */
export function splitRuleRecipe(name: string): { rule: string; recipe: string } {
  const plus = name.indexOf('+');
  return plus < 0 ? { rule: name, recipe: 'none' } : { rule: name.slice(0, plus), recipe: name.slice(plus + 1) };
}

/**
 * The cells' rule names for a sweep of rules × recipes: every rule without a recipe of its own is crossed with
 * every recipe ('none' is the plain rule, written without '+'); a rule that names its recipe stays as it is.
 * Order: rule-major, recipes in the order given; duplicates dropped.
 */
export function crossRecipes(rules: readonly string[], recipes: readonly string[] | undefined): string[] {
  if (!recipes?.length) return [...rules];
  const out = rules.flatMap((r) => (r.includes('+') ? [r] : recipes.map((c) => (c === 'none' ? r : `${r}+${c}`))));
  return [...new Set(out)];
}
