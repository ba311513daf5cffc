/**
 * Mixed-precision fallback: keep the fewest layers in float — or at 16 bits — so that the output error on
 * calibration data meets a budget. Layers are ranked once by isolated error (each layer quantized alone: L
 * evaluations), then the number of top-ranked layers given the higher precision is found by binary search (log L
 * evaluations) — O(L) in all, not O(L²).
 */
import { clone } from '@bufbuild/protobuf';
import { ModelProtoSchema } from 'onnx-buf';
import { UserError } from '../errors.ts';
import { opsetVersion } from '../ir/graph.ts';
import { upgradeOpset } from '../ir/opset-upgrade.ts';
import { intRange, minOpsetFor, type QuantParams, type TensorQuantConfig } from '../quant/config.ts';
import { scaleFromRange } from '../quant/numerics.ts';
import type { PlannedTensor, QuantPlan } from '../quant/plan.ts';
import { outputError, type OptimiseContext, type OptimisePass, type QuantState } from './context.ts';

/** What the chosen layers fall back to: float (unquantized inputs), or the rule's integer format at 16 bits. */
export type FallbackPrecision = 'float' | 'int16';

export function withoutLayers(plan: QuantPlan, nodes: ReadonlySet<string>): QuantPlan {
  const tensors = plan.tensors
    .map((t) => ({ ...t, uses: t.uses.filter((u) => !nodes.has(u.node)) }))
    .filter((t) => t.uses.length > 0);
  return {
    ...plan,
    tensors,
    layers: plan.layers.filter((l) => !nodes.has(l.node)),
    skipped: [...plan.skipped, ...[...nodes].map((node) => ({ node, reason: 'kept float by mixed-precision fallback' }))],
  };
}

/** The rule's config at 16 bits: the full int16 (or uint16) range, everything else (symmetry, power-of-two) kept. */
function sixteenBits(cfg: TensorQuantConfig): TensorQuantConfig {
  return { ...cfg, bits: 16, ...intRange(16, cfg.qmin < 0) };
}

function requireInteger(t: PlannedTensor | undefined): void {
  if (t && t.config.format !== 'int') throw new UserError(`16-bit fallback needs an integer rule ('${t.tensor}' is ${t.config.format}); use float fallback`);
}

/**
 * The inputs (activation and weight) of `nodes` at 16 bits. Each tensor keeps the range it was calibrated to and
 * gets the 16-bit scale for it (`scaleFromRange`, per channel): for the min/max and percentile observers of the
 * integer rules that is exactly what calibrating at 16 bits gives, since their statistics do not depend on the
 * width; for KL/MSE it keeps the 8-bit clipping range. A tensor read by chosen and other layers is split: the chosen
 * ones read a 16-bit Q/DQ pair (plan key `…#16`), the others keep theirs. The model must be at opset 21.
 */
export function atSixteenBits(state: QuantState, nodes: ReadonlySet<string>): QuantState {
  const tensors: PlannedTensor[] = [];
  const params = new Map(state.params);
  for (const t of state.plan.tensors) {
    const chosen = t.uses.filter((u) => nodes.has(u.node));
    if (!chosen.length) {
      tensors.push(t);
      continue;
    }
    requireInteger(t);
    const others = t.uses.filter((u) => !nodes.has(u.node));
    if (others.length) tensors.push({ ...t, uses: others });
    const wide: PlannedTensor = { ...t, key: `${t.key}#16`, config: sixteenBits(t.config), uses: chosen };
    const p = state.params.get(t.key)!;
    const sz = Array.from(p.scale, (_, c) => scaleFromRange(p.min[c], p.max[c], wide.config));
    params.set(wide.key, { ...p, scale: Float32Array.from(sz, (x) => x.scale), zeroPoint: Int32Array.from(sz, (x) => x.zeroPoint) } satisfies QuantParams);
    tensors.push(wide);
  }
  return { ...state, plan: { ...state.plan, tensors }, params };
}

function onlyLayer(plan: QuantPlan, node: string): QuantPlan {
  return withoutLayers(plan, new Set(plan.layers.map((l) => l.node).filter((n) => n !== node)));
}

export async function rankLayersByIsolatedError(state: QuantState, ctx: OptimiseContext): Promise<{ node: string; error: number }[]> {
  const ranked: { node: string; error: number }[] = [];
  for (const l of state.plan.layers) ranked.push({ node: l.node, error: await outputError({ ...state, plan: onlyLayer(state.plan, l.node) }, ctx) });
  return ranked.sort((a, b) => b.error - a.error);
}

export function fallbackPass(budget: number, precision: FallbackPrecision = 'float'): OptimisePass {
  return {
    name: precision === 'float' ? 'fallback' : 'fallback-int16',
    stage: 'post',
    changesWhatIsQuantized: true,
    async run(state, ctx) {
      if (precision === 'int16') requireInteger(state.plan.tensors.find((t) => t.config.format !== 'int')); // before any work
      const full = await outputError(state, ctx);
      if (full <= budget) return { state, detail: `error ${(full * 100).toFixed(3)}% already within budget ${(budget * 100).toFixed(3)}%` };
      const ranked = await rankLayersByIsolatedError(state, ctx);
      let evaluations = ranked.length + 1;
      // 16-bit Q/DQ needs opset 21; the float function is unchanged by the upgrade.
      let base = state;
      const int16Opset = minOpsetFor(sixteenBits(state.plan.tensors[0].config)); // 21: int16 Q/DQ
      if (precision === 'int16' && opsetVersion(state.model) < int16Opset) {
        const model = clone(ModelProtoSchema, state.model);
        upgradeOpset(model, int16Opset);
        base = { ...state, model };
      }
      const apply = (nodes: ReadonlySet<string>): QuantState => (precision === 'float' ? { ...state, plan: withoutLayers(state.plan, nodes) } : atSixteenBits(base, nodes));
      const errorWith = async (k: number) => {
        evaluations++;
        return outputError(apply(new Set(ranked.slice(0, k).map((r) => r.node))), ctx);
      };
      let lo = 0;
      let hi = ranked.length; // all float meets any budget ≥ 0; all at 16 bits may not (checked below)
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if ((await errorWith(mid)) <= budget) hi = mid;
        else lo = mid + 1;
      }
      const chosen = new Set(ranked.slice(0, lo).map((r) => r.node));
      const what = precision === 'float' ? 'float' : 'at 16 bits';
      // The search assumed that giving every layer the higher precision meets the budget: true for float, to check at 16 bits.
      const short = lo === ranked.length && precision !== 'float' && (await errorWith(lo)) > budget ? '; the budget is not met even so' : '';
      ctx.log(`fallback: ${lo} of ${ranked.length} layers kept ${what} (${[...chosen].join(', ')}), ${evaluations} evaluations${short}`);
      return { state: apply(chosen), detail: `${lo} layers ${what}: ${[...chosen].join(', ')}; ${evaluations} evaluations${short}` };
    },
  };
}
