/**
 * The library's main entry: load → format → raise opset → plan → calibrate → realise. Every stage takes and
 * returns plain data; this function only wires them and times them.
 */
import type { ModelProto } from 'onnx-buf';
import { calibrate, readBatches, type CalibrateOptions, type CalibrationData, type Feeds } from './calibrate/calibrate.ts';
import { UserError } from './errors.ts';
import { formatModel } from './ir/format.ts';
import { computedNames, opsetVersion } from './ir/graph.ts';
import { upgradeOpset } from './ir/opset-upgrade.ts';
import { applyOverride, minOpsetFor, type QuantParams } from './quant/config.ts';
import { planModel, type Filter, type QuantPlan } from './quant/plan.ts';
import type { QuantRule } from './quant/rules.ts';
import { realiseQdq } from './realise/qdq.ts';
import { buildSidecar, type Sidecar } from './realise/sidecar.ts';
import type { KeepTest, PassReport } from './optimise/context.ts';
import { runRecipe } from './optimise/optimise.ts';
import type { PassSpec } from './optimise/recipes.ts';

export interface PreparedModel {
  model: ModelProto;
  formatPasses: string[];
  opsetFrom: number;
  opsetTo: number;
}

/**
 * Format and raise the opset to what the Q/DQ nodes need: the rule's, and that of any per-tensor override (an int16
 * or int4 override needs opset 21 under an int8 rule; taken for both roles, as an override may match either).
 */
export function prepareModel(model: ModelProto, rule: QuantRule, filter?: Filter): PreparedModel {
  const { model: formatted, applied } = formatModel(model);
  const opsetFrom = opsetVersion(formatted);
  const overrideNeeds = Object.entries(filter?.overrides ?? {}).flatMap(([name, o]) =>
    o === 'float' ? [] : [rule.activation, rule.weight].map((c) => minOpsetFor(applyOverride(c, o, `override for '${name}'`))),
  );
  const opsetTo = Math.max(opsetFrom, rule.minOpset, ...overrideNeeds);
  upgradeOpset(formatted, opsetTo);
  return { model: formatted, formatPasses: [...new Set(applied)], opsetFrom, opsetTo };
}

export interface QuantizeOptions extends CalibrateOptions {
  rule: QuantRule;
  filter?: Filter;
  /** Accuracy-recovery passes (see optimise/recipes.ts); the calibration batches are then held in memory. */
  recipe?: readonly PassSpec[];
  /** How the recipe judges each pass's change (optimise/context.ts keepDecision); default 'mean'. */
  keepTest?: KeepTest;
  /** Calibration batches the recipe judges its passes on (default: optimise.ts splitCalibration's). */
  measureBatches?: number;
  /** The tensors whose error the recipe's passes are judged by (default: the graph outputs): any tensor a node of the
   * formatted model computes — e.g. a detector's heat map before its peak mask, whose error on a sample is otherwise
   * decided by which near-equal peaks flip (mlsd_320_tiny's 'scores'). */
  outputs?: readonly string[];
  log?: (line: string) => void;
}

export interface QuantizeResult {
  model: ModelProto;
  /** The formatted float model the plan refers to (same names): the reference for error analysis (after a recipe,
   * with the kept function-preserving rescalings — equalization, outlier migration — applied). */
  floatModel: ModelProto;
  plan: QuantPlan;
  params: Map<string, QuantParams>;
  sidecar: Sidecar;
  batches: number;
  timings: { prepareMs: number; calibrateMs: number; realiseMs: number; optimiseMs?: number };
  /** Per-pass before/after output error on calibration data, when a recipe ran. */
  passes?: PassReport[];
}

export async function quantize(model: ModelProto, data: CalibrationData, opts: QuantizeOptions): Promise<QuantizeResult> {
  const t0 = performance.now();
  const prepared = prepareModel(model, opts.rule, opts.filter);
  const plan = planModel(prepared.model, opts.rule, opts.filter);
  const t1 = performance.now();
  if (opts.recipe?.length) {
    const computed = computedNames(prepared.model);
    const absent = opts.outputs?.find((t) => !computed.has(t));
    if (absent !== undefined) throw new UserError(`outputs: no node of the formatted model computes '${absent}'`);
    const calibration: Feeds[] = [];
    for await (const b of readBatches(data)) {
      if (opts.steps !== undefined && calibration.length >= opts.steps) break;
      calibration.push(b);
      opts.onBatch?.(calibration.length);
    }
    const { state, reports, reference } = await runRecipe(prepared.model, opts.recipe, { rule: opts.rule, filter: opts.filter, calibration, statsOn: opts.statsOn, provider: opts.provider, keepTest: opts.keepTest, measureBatches: opts.measureBatches, outputs: opts.outputs, log: opts.log });
    const t2 = performance.now();
    const qdq = realiseQdq(state.model, state.plan, state.params);
    const t3 = performance.now();
    return {
      model: qdq,
      floatModel: reference,
      plan: state.plan,
      params: state.params,
      // A 16-bit fallback raises the opset (21) after preparation: record the model's own.
      sidecar: buildSidecar(state.plan, state.params, { batches: calibration.length, opsetFrom: prepared.opsetFrom, opsetTo: opsetVersion(qdq), formatPasses: prepared.formatPasses }),
      batches: calibration.length,
      timings: { prepareMs: t1 - t0, calibrateMs: 0, optimiseMs: t2 - t1, realiseMs: t3 - t2 },
      passes: reports,
    };
  }
  const { params, batches } = await calibrate(prepared.model, plan, data, opts);
  const t2 = performance.now();
  const qdq = realiseQdq(prepared.model, plan, params);
  const t3 = performance.now();
  return {
    model: qdq,
    floatModel: prepared.model,
    plan,
    params,
    sidecar: buildSidecar(plan, params, { batches, opsetFrom: prepared.opsetFrom, opsetTo: prepared.opsetTo, formatPasses: prepared.formatPasses }),
    batches,
    timings: { prepareMs: t1 - t0, calibrateMs: t2 - t1, realiseMs: t3 - t2 },
  };
}
