/**
 * Diagnostic passes: leave every tensor of one role float — `weights-float` quantizes only the activations,
 * `activations-float` only the weights — so a rule's round-to-nearest loss on the task metric splits into what each
 * role costs. They change what the rule quantizes (like `fallback`), so they are never part of `best`; the recipe
 * keeps them whatever the error does, since their point is the measurement.
 *
 * They locate the loss; they do not bound what recovery can reach: weight rounding fitted on quantized inputs
 * absorbs the part of the activation error that is correlated with the inputs (en_number on IC15, float 47.62%:
 * FP8 with only the activations quantized 6.55%, FP8 `best` 32.31%).
 */
import type { TensorRole } from '../quant/plan.ts';
import type { OptimisePass } from './context.ts';

export function floatRolePass(role: TensorRole): OptimisePass {
  const name = role === 'weight' ? 'weights-float' : 'activations-float';
  return {
    name,
    stage: 'post',
    changesWhatIsQuantized: true,
    async run(state, ctx) {
      if (!ctx.recalibrate) throw new Error(`${name} recalibrates the remaining tensors: it runs inside a recipe (runRecipe)`);
      const dropped = new Set(state.plan.tensors.filter((t) => t.role === role).map((t) => t.key));
      const plan = { ...state.plan, tensors: state.plan.tensors.filter((t) => !dropped.has(t.key)) };
      // Recalibrated, not filtered: activation statistics are gathered on the network with its weights as the plan
      // quantizes them (PPQ's order), so with float weights the activations see the float network. Keeping the
      // ranges found with quantized weights measured something else (en_number per-channel, activations only:
      // 20.65% with the old ranges, 30.09% recalibrated).
      const params = await ctx.recalibrate(state.model, plan);
      return {
        state: { ...state, plan, params },
        detail: `${dropped.size} ${role} tensor(s) left float (diagnostic: only the ${role === 'weight' ? 'activations' : 'weights'} quantized)`,
      };
    },
  };
}
