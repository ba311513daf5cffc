/**
 * Issue 8's corpus goal: "no corpus model gets a worse OQE with --recipe best than without". For every model in
 * ../shared/corpus (or the files given) and every OnnxQuant rule: quantize plain and with a recipe from the same
 * seeded random calibration feeds, then measure OQE (PPQ power ratio Σ(A−B)²/ΣB², worst graph output) of each
 * simulated QDQ model against the float model on held-out random feeds (other seeds). The corpus has no labelled
 * data, so random feeds stand in for both; the recipe never sees the held-out feeds, so a recipe that only
 * overfits its calibration batches shows here as a worse OQE.
 *
 *   node --import tsx bench/corpus-recipe.ts [--recipe best] [--rules a,b] [--calib 12] [--heldout 4] [model.onnx …]
 *
 * Prints a markdown table and writes bench-results/corpus-recipe-<time>.json.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { parseArgs } from 'node:util';
import type { ModelProto } from 'onnx-buf';
import * as ort from 'onnxruntime-node';
import { ErrorAccumulator } from '../src/analyse/error-measures.ts';
import type { Feeds } from '../src/calibrate/calibrate.ts';
import { loadModel } from '../src/onnx/model-io.ts';
import { getRecipe } from '../src/optimise/recipes.ts';
import { quantize } from '../src/quantize.ts';
import { getRule, RULE_NAMES } from '../src/quant/rules.ts';
import { randomFeeds } from '../src/runtime/inputs.ts';
import { createSession, type RunMode } from '../src/runtime/session.ts';
import { feedOptions, onnxFiles, SHARED } from '../test/helpers/models.ts';
import { machine } from './util.ts';

const { values: args, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    recipe: { type: 'string', default: 'best' },
    rules: { type: 'string', default: RULE_NAMES.join(',') },
    calib: { type: 'string', default: '12' },
    heldout: { type: 'string', default: '4' },
  },
});

const files = positionals.length ? positionals : onnxFiles(join(SHARED, 'corpus'));
if (!files.length) {
  console.error(`corpus-recipe: no models (../shared/corpus absent and none given)`);
  process.exit(1);
}

function feeds(model: ModelProto, file: string, seeds: number[]): Feeds[] {
  const opts = feedOptions(file);
  return seeds.map((seed) => ({ ...randomFeeds(model, { ...opts, seed }), ...opts.extra }));
}

/** Power ratio of `quant` (simulate) against `float` over the held-out feeds, per float32 graph output. OQE is the worst. */
async function oqeByOutput(float: ModelProto, quant: ModelProto, held: Feeds[]): Promise<Record<string, number>> {
  const run = async (m: ModelProto, mode: RunMode) => {
    const s = await createSession(m, { mode });
    try {
      const outs: Record<string, ort.Tensor>[] = [];
      for (const f of held) outs.push(await s.run(f));
      return outs;
    } finally {
      await s.release();
    }
  };
  const ref = await run(float, 'float');
  const got = await run(quant, 'simulate');
  const byOutput: Record<string, number> = {};
  for (const name of Object.keys(ref[0])) {
    if (ref[0][name].type !== 'float32') continue;
    const acc = new ErrorAccumulator();
    ref.forEach((r, i) => acc.add(got[i][name].data as Float32Array, r[name].data as Float32Array, r[name].dims[0] ?? 1));
    byOutput[name] = acc.result().powerRatio;
  }
  return byOutput;
}

const worst = (byOutput: Record<string, number>) => Math.max(0, ...Object.values(byOutput));

interface Row {
  model: string;
  rule: string;
  plain?: number;
  recipe?: number;
  /** Each output's power ratio (OQE is their maximum), so a trade between heads is visible. */
  plainByOutput?: Record<string, number>;
  recipeByOutput?: Record<string, number>;
  plainMs?: number;
  recipeMs?: number;
  passes?: string;
  error?: string;
}

const calibSeeds = Array.from({ length: Number(args.calib) }, (_, i) => i + 1);
const heldSeeds = Array.from({ length: Number(args.heldout) }, (_, i) => 1000 + i);
const recipe = getRecipe(args.recipe!);
const rows: Row[] = [];
/** Every output's plain → recipe power ratio when the model has several (one output: its OQE says it all). */
const byOutputCell = (row: Row) =>
  row.plainByOutput && row.recipeByOutput && Object.keys(row.plainByOutput).length > 1
    ? Object.keys(row.plainByOutput).map((k) => `${k} ${pct(row.plainByOutput![k])} → ${pct(row.recipeByOutput![k])}`).join('; ')
    : '';
const pct = (x: number | undefined) => (x === undefined ? '—' : `${(x * 100).toFixed(3)}%`);
console.log(`| model | rule | OQE plain | OQE +${args.recipe} | verdict | plain s | +${args.recipe} s | passes kept | outputs (plain → +${args.recipe}) |`);
console.log('|---|---|---:|---:|---|---:|---:|---|---|');
for (const file of files) {
  const model = loadModel(file);
  const calib = feeds(model, file, calibSeeds);
  const held = feeds(model, file, heldSeeds);
  for (const ruleName of args.rules!.split(',')) {
    const row: Row = { model: basename(file), rule: ruleName };
    try {
      const rule = getRule(ruleName);
      const data = async function* () {
        yield* calib;
      };
      let t = performance.now();
      const plain = await quantize(model, data(), { rule });
      row.plainMs = performance.now() - t;
      row.plainByOutput = await oqeByOutput(plain.floatModel, plain.model, held);
      row.plain = worst(row.plainByOutput);
      t = performance.now();
      const rec = await quantize(model, data(), { rule, recipe });
      row.recipeMs = performance.now() - t;
      // Both against the formatted float model's function (the recipe's reference keeps it: rescalings are exact).
      row.recipeByOutput = await oqeByOutput(rec.floatModel, rec.model, held);
      row.recipe = worst(row.recipeByOutput);
      row.passes = (rec.passes ?? []).filter((p) => p.kept).map((p) => p.pass).join(', ') || 'none';
    } catch (e) {
      row.error = (e as Error).message.split('\n')[0];
    }
    rows.push(row);
    const verdict = row.error ? `error: ${row.error}` : row.recipe! <= row.plain! * (1 + 1e-6) + 1e-9 ? 'ok' : '**worse**';
    console.log(`| ${row.model} | ${row.rule} | ${pct(row.plain)} | ${pct(row.recipe)} | ${verdict} | ${((row.plainMs ?? 0) / 1000).toFixed(1)} | ${((row.recipeMs ?? 0) / 1000).toFixed(1)} | ${row.passes ?? ''} | ${byOutputCell(row)} |`);
  }
}
mkdirSync('bench-results', { recursive: true });
const out = join('bench-results', `corpus-recipe-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
writeFileSync(out, JSON.stringify({ machine: machine(), recipe: args.recipe, calibSeeds, heldSeeds, rows }, null, 2));
console.log(`\nwrote ${out}`);
