/**
 * The library's main entry: load → format → raise opset → plan → calibrate → realise. Every stage takes and
 * returns plain data; this function only wires them and times them.
 */
import type { ModelProto } from 'onnx-buf';
import { calibrate, type CalibrateOptions, type Feeds } from './calibrate/calibrate.ts';
import { formatModel } from './ir/format.ts';
import { opsetVersion } from './ir/graph.ts';
import { upgradeOpset } from './ir/opset-upgrade.ts';
import type { QuantParams } from './quant/config.ts';
import { planModel, type Filter, type QuantPlan } from './quant/plan.ts';
import type { QuantRule } from './quant/rules.ts';
import { realiseQdq } from './realise/qdq.ts';
import { buildSidecar, type Sidecar } from './realise/sidecar.ts';

export interface PreparedModel {
  model: ModelProto;
  formatPasses: string[];
  opsetFrom: number;
  opsetTo: number;
}

/** Format and raise the opset to what the rule's Q/DQ nodes need. */
export function prepareModel(model: ModelProto, rule: QuantRule): PreparedModel {
  const { model: formatted, applied } = formatModel(model);
  const opsetFrom = opsetVersion(formatted);
  const opsetTo = Math.max(opsetFrom, rule.minOpset);
  upgradeOpset(formatted, opsetTo);
  return { model: formatted, formatPasses: [...new Set(applied)], opsetFrom, opsetTo };
}

export interface QuantizeOptions extends CalibrateOptions {
  rule: QuantRule;
  filter?: Filter;
}

export interface QuantizeResult {
  model: ModelProto;
  /** The formatted float model the plan refers to (same names): the reference for error analysis. */
  floatModel: ModelProto;
  plan: QuantPlan;
  params: Map<string, QuantParams>;
  sidecar: Sidecar;
  batches: number;
  timings: { prepareMs: number; calibrateMs: number; realiseMs: number };
}

export async function quantize(model: ModelProto, data: AsyncIterable<Feeds>, opts: QuantizeOptions): Promise<QuantizeResult> {
  const t0 = performance.now();
  const prepared = prepareModel(model, opts.rule);
  const plan = planModel(prepared.model, opts.rule, opts.filter);
  const t1 = performance.now();
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
