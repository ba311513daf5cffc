/** Option parsers and checks shared by the subcommands: a bad value is a one-line UserError naming the flag. */
import { UserError } from '../errors.ts';
import type { KeepTest } from '../optimise/context.ts';

export const posInt = (name: string) => (v: string): number => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new UserError(`${name} must be a positive integer, got '${v}'`);
  return n;
};

/**
 * --measure-batches (quantize and zoo): it judges a recipe's passes, so it needs one, and it must leave calibration
 * batches to fit on (else the passes would fit on the batches that judge them). `addRecipe` says how to add one;
 * `batchesFlag` names the flag that set `batches`.
 */
export function checkMeasureBatches(measure: number | undefined, o: { hasRecipe: boolean; addRecipe: string; batches: number; batchesFlag: string }): void {
  if (measure === undefined) return;
  if (!o.hasRecipe) throw new UserError(`--measure-batches sets how a recipe judges its passes: add ${o.addRecipe}, or leave it out`);
  if (measure >= o.batches) throw new UserError(`--measure-batches ${measure} leaves no calibration batch to fit on (${o.batchesFlag} ${o.batches})`);
}

/** --keep-test (quantize and zoo): how a recipe judges its passes, so it needs one (`addRecipe` says how to add it). */
export function parseKeepTest(v: unknown, o: { hasRecipe: boolean; addRecipe: string }): KeepTest | undefined {
  if (v === undefined) return undefined;
  const test = String(v);
  if (test !== 'mean' && test !== 'mean-or-log' && test !== 'lower') throw new UserError(`--keep-test must be mean, mean-or-log or lower, got '${test}'`);
  if (!o.hasRecipe) throw new UserError(`--keep-test judges the passes of a recipe: add ${o.addRecipe}, or leave --keep-test out`);
  return test;
}

/** --keep-test's help (quantize and zoo); `byDefault` says what judges without it. */
export const keepTestHelp = (byDefault: string): string =>
  `how a recipe judges each pass's change on calibration data: 'mean' (paired test on the per-sample power ratios), 'mean-or-log' (also the same test on their logs, for heavy-tailed per-sample errors such as super-resolution's) or 'lower' (kept when the mean is lower at all; the recipe returns its last state confirmed by the mean-or-log test against the one confirmed before, at first the plain rule; default ${byDefault})`;
