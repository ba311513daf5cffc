/**
 * Runs a recipe: 'pre' passes rewrite the float model before planning and calibration (each is calibrated and
 * measured against the unmodified model, and dropped if it does not lower the error); 'post' passes refine the
 * calibrated state and roll themselves back. Returns the final state and a report per pass with its time.
 */
import type { ModelProto } from 'onnx-buf';
import { calibrate, type Feeds } from '../calibrate/calibrate.ts';
import { planModel, type Filter } from '../quant/plan.ts';
import type { QuantRule } from '../quant/rules.ts';
import { outputError, type OptimiseContext, type PassReport, type QuantState } from './context.ts';
import { passFor, type PassSpec } from './recipes.ts';

export interface OptimiseOptions {
  rule: QuantRule;
  filter?: Filter;
  /** Calibration batches, held in memory (recipes calibrate more than once). */
  calibration: Feeds[];
  /** How many of them the passes use to measure error (default 4). */
  measureBatches?: number;
  statsOn?: 'quantized-weights' | 'float';
  log?: (line: string) => void;
}

async function calibrated(model: ModelProto, o: OptimiseOptions): Promise<QuantState> {
  const plan = planModel(model, o.rule, o.filter);
  async function* data() {
    yield* o.calibration;
  }
  const { params } = await calibrate(model, plan, data(), { statsOn: o.statsOn });
  return { model, plan, params };
}

/**
 * `reference` is the float model the final plan refers to: the prepared model after the kept 'pre' passes, which
 * keep the float function (equalization, outlier migration) but rescale channels, so layer-by-layer error analysis
 * must compare against it rather than against the unmodified model. 'post' passes change weights or biases toward
 * their quantized values and are never part of it.
 */
export async function runRecipe(prepared: ModelProto, recipe: readonly PassSpec[], o: OptimiseOptions): Promise<{ state: QuantState; reports: PassReport[]; reference: ModelProto }> {
  const measure = o.measureBatches ?? 4;
  const ctx: OptimiseContext = {
    rule: o.rule,
    reference: prepared,
    batches: o.calibration.slice(0, measure),
    fitBatches: o.calibration.length >= measure + 4 ? o.calibration.slice(measure, measure + 8) : o.calibration.slice(0, 8),
    outputs: prepared.graph!.output.map((v) => v.name),
    log: o.log ?? (() => {}),
  };
  const reports: PassReport[] = [];
  let state = await calibrated(prepared, o);
  let error = await outputError(state, ctx);
  let reference = prepared;
  for (const spec of recipe) {
    const pass = passFor(spec);
    const t0 = performance.now();
    let next: QuantState;
    let detail: string | undefined;
    if (pass.stage === 'pre') {
      const r = await pass.run(state, ctx);
      detail = r.detail;
      next = await calibrated(r.state.model, o);
    } else {
      const r = await pass.run(state, ctx);
      next = r.state;
      detail = r.detail;
    }
    const after = next === state ? error : await outputError(next, ctx);
    const kept = after < error || (spec.pass === 'fallback' && next !== state);
    reports.push({ pass: pass.name, before: error, after, kept, ms: performance.now() - t0, detail });
    ctx.log(`${pass.name}: output error ${(error * 100).toFixed(3)}% → ${(after * 100).toFixed(3)}% (${kept ? 'kept' : 'rolled back'})`);
    if (kept) {
      state = next;
      error = after;
      if (pass.stage === 'pre') {
        // Same float function, rescaled channels: later passes compare layer outputs against this model.
        reference = next.model;
        ctx.reference = reference;
      }
    }
  }
  return { state, reports, reference };
}
