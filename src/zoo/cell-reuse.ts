/**
 * Whether a finished zoo cell on disk still answers the cell a run asks for. A rerun reuses finished cells (the zoo
 * is resumable), but a cell is a result of its model file, its rule, its recipe's passes and the keep test that judged
 * them, and the run's options; when any of them has changed since it was written, reusing it would put an old result
 * in a new table under the same name. Cells written before a field was recorded are judged on what they do record
 * (`passes` names the recipe's passes in order). The data are not checked (hashing every image on each rerun would
 * cost more than many cells): a registry entry pointed at other images keeps its cells until `--force`.
 */
import type { KeepTest } from '../optimise/context.ts';
import { passFor, type PassSpec } from '../optimise/recipes.ts';
import type { QuantRule } from '../quant/rules.ts';
import type { CellSettings, ZooRow } from './results.ts';

export interface CellExpectation {
  modelSha256: string;
  /** The recipe's passes now (empty: the plain rule). */
  recipe: readonly PassSpec[];
  /** How the recipe would judge its passes now (the task's test, or the run's --keep-test); unused without one. */
  keepTest: KeepTest;
  /** A rule from a file: its definition now (the OnnxQuant rules are fixed by name). */
  ruleDefinition?: QuantRule;
  settings: CellSettings;
}

/** JSON with object keys sorted, so two definitions compare equal whatever order their fields were written in. */
function canonical(v: unknown): string {
  return JSON.stringify(v, (_k, x: unknown) =>
    x && typeof x === 'object' && !Array.isArray(x) ? Object.fromEntries(Object.entries(x).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) : x,
  );
}

const SETTING_FLAGS: Record<keyof CellSettings, string> = {
  calibBatches: '--calib-batches',
  batch: '--batch',
  testLimit: '--test-limit',
  analyseSamples: '--analyse-samples',
  measureBatches: '--measure-batches',
};

/** Why the cell on disk is not the one asked for, or undefined when it can be reused. */
export function staleReason(cell: ZooRow, want: CellExpectation): string | undefined {
  const p = cell.provenance;
  if (!p) return 'it records no provenance';
  if (p.modelSha256 !== want.modelSha256) return 'the model file has changed since';
  const recipeNow = p.recipe
    ? canonical(p.recipe) === canonical(want.recipe)
    : (cell.passes ?? []).map((r) => r.pass).join() === want.recipe.map((s) => passFor(s).name).join();
  if (!recipeNow) return 'its recipe had other passes then';
  // The same passes judged by another test keep other changes. A recipe cell that records none predates the choice:
  // it was judged by the mean test, the only one then.
  const keptBy = p.keepTest ?? 'mean';
  if (want.recipe.length && keptBy !== want.keepTest) return `its recipe's passes were judged by the '${keptBy}' keep test then (now '${want.keepTest}')`;
  // 'lower' kept every pass whose mean fell until its recipes returned their last confirmed state (1fd4149).
  if (want.recipe.length && keptBy === 'lower' && !p.chainConfirmed) return "its recipe's passes were judged by the 'lower' keep test before recipes under it confirmed their chain";
  if (canonical(p.ruleDefinition ?? null) !== canonical(want.ruleDefinition ?? null)) return 'its rule was defined differently then';
  if (p.settings) {
    for (const k of Object.keys(SETTING_FLAGS) as (keyof CellSettings)[]) {
      // A field the cell predates reads as null (the default it was run with).
      const was = p.settings[k] ?? null;
      const now = want.settings[k] ?? null;
      if (was !== now) return `it was run with ${SETTING_FLAGS[k]} ${was ?? '(none)'} (now ${now ?? '(none)'})`;
    }
  }
  return undefined;
}
