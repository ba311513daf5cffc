/**
 * Mixed-precision fallback: keep the fewest layers in float so that the output error on calibration data meets a
 * budget. Layers are ranked once by isolated error (each layer quantized alone: L evaluations), then the number of
 * top-ranked layers left float is found by binary search (log L evaluations) — O(L) in all, not O(L²).
 */
import type { QuantPlan } from '../quant/plan.ts';
import { outputError, type OptimiseContext, type OptimisePass, type QuantState } from './context.ts';

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

function onlyLayer(plan: QuantPlan, node: string): QuantPlan {
  return withoutLayers(plan, new Set(plan.layers.map((l) => l.node).filter((n) => n !== node)));
}

export async function rankLayersByIsolatedError(state: QuantState, ctx: OptimiseContext): Promise<{ node: string; error: number }[]> {
  const ranked: { node: string; error: number }[] = [];
  for (const l of state.plan.layers) ranked.push({ node: l.node, error: await outputError({ ...state, plan: onlyLayer(state.plan, l.node) }, ctx) });
  return ranked.sort((a, b) => b.error - a.error);
}

export function fallbackPass(budget: number): OptimisePass {
  return {
    name: 'fallback',
    stage: 'post',
    async run(state, ctx) {
      const full = await outputError(state, ctx);
      if (full <= budget) return { state, detail: `error ${(full * 100).toFixed(3)}% already within budget ${(budget * 100).toFixed(3)}%` };
      const ranked = await rankLayersByIsolatedError(state, ctx);
      let evaluations = ranked.length + 1;
      const errorWith = async (k: number) => {
        evaluations++;
        return outputError({ ...state, plan: withoutLayers(state.plan, new Set(ranked.slice(0, k).map((r) => r.node))) }, ctx);
      };
      let lo = 0;
      let hi = ranked.length; // all float meets any budget ≥ 0
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if ((await errorWith(mid)) <= budget) hi = mid;
        else lo = mid + 1;
      }
      const chosen = new Set(ranked.slice(0, lo).map((r) => r.node));
      ctx.log(`fallback: ${lo} of ${ranked.length} layers kept float (${[...chosen].join(', ')}), ${evaluations} evaluations`);
      return { state: { ...state, plan: withoutLayers(state.plan, chosen) }, detail: `${lo} layers float: ${[...chosen].join(', ')}; ${evaluations} evaluations` };
    },
  };
}
