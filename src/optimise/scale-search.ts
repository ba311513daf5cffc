/**
 * Activation scale search by network output error: greedy coordinate descent over the activations' scales, each
 * trial judged by the *network output* error on calibration batches — where range-search.ts judges a scale by its
 * consumer layers' outputs alone. The layer-local objective cannot see that an activation's error is amplified, or
 * damped, downstream (the same blind spot rounding-search.ts addresses for weights); hard-swish networks such as
 * en_number's MobileNetV3 are where it matters.
 *
 * The candidates respect the rule: integer scales move by a factor (×0.8, ×0.9, ×1.1, ×1.25 of the current one),
 * power-of-two scales by one binade (floor vs ceil of log2, and beyond), FP8 scales to the neighbouring members of the
 * rule's candidate set. Zero points are unchanged (the OnnxQuant rules are symmetric).
 *
 * It runs on the recipe's fresh batches (`splitCalibration`), not on the ones weight rounding fitted to, which hold
 * that fit's noise (en_number power-of-2 after `best`: the measuring error went 1.785% → 2.143% when the search
 * ran on the fitting batches, → 1.949% on fresh ones; both rolled back).
 *
 * Cost: one network run over the search samples per trial. Every activation's Q/DQ reads its scale from a graph
 * input of one session (no session per trial). Activations are visited in graph order; each tries its candidates
 * and keeps the one with the lowest mean error when it is below the current one ('lower', the default), or only
 * among those whose per-sample errors are significantly lower (`accept: 'significant'`, the recipe's paired test).
 * Measured on en_number (IC15), the pass alone: per-channel 21.86% → 44.58% ('lower') vs 43.67% ('significant'),
 * power-of-2 3.51% → 5.15% vs 4.72% (10.06% with 'lower' on the fitting batches, before the fresh split). After
 * `best`, 'lower' moves follow the search samples' noise (power-of-2: search batches 1.577% → 1.457%, measuring
 * 1.785% → 1.949%) and the recipe rolls them back; 'significant' makes no move there. The default is the one that
 * gains alone. `best` runs it last (recipes.ts), where its moves held on mobilenetv2-7 per-channel (measuring error
 * 1.199% → 1.056%) and the recipe's own test rolls them back elsewhere.
 */
import { TensorProto_DataType as DT } from 'onnx-buf';
import * as ort from 'onnxruntime-node';
import { FP8_SCALE_CANDIDATES } from '../calibrate/observers.ts';
import { GraphView, tensorValueInfo } from '../ir/graph.ts';
import { batchSize } from '../calibrate/calibrate.ts';
import type { PlannedTensor } from '../quant/plan.ts';
import { realiseQdq } from '../realise/qdq.ts';
import { createSession } from '../runtime/session.ts';
import { cloneParams, firstSamples, floatOutputs, freshBatches, mean, searchErrors, significantlyLower, type OptimisePass } from './context.ts';

export interface ScaleSearchOptions {
  /** Trials in all (each is one network run over the search samples). */
  trials: number;
  /** Passes over the activations (a later pass revisits each scale in the light of the others). */
  sweeps: number;
  /** Search samples used (the first fresh batches holding at least this many). */
  samples: number;
  /** A move is kept when its per-sample errors are lower than the current ones: on the mean ('lower'), or by more
   * than KEEP_Z standard errors of the paired differences ('significant', the recipe's own test). */
  accept: 'lower' | 'significant';
}

export const SCALE_SEARCH_DEFAULTS: ScaleSearchOptions = { trials: 512, sweeps: 2, samples: 128, accept: 'lower' };

/** Integer (not power-of-two) scales: these factors of the current scale, rounded to float32. */
export const INT_SCALE_FACTORS = [0.8, 0.9, 1.1, 1.25] as const;

/** The scales a search may try instead of `scale` for tensor `t`, within its rule. */
export function scaleCandidates(t: PlannedTensor, scale: number): number[] {
  if (t.config.format !== 'int') {
    const set: readonly number[] = FP8_SCALE_CANDIDATES;
    const i = set.indexOf(scale);
    // A scale outside the set (not from the rule's observer) has no neighbours to move to.
    return i < 0 ? [] : [set[i - 1], set[i + 1]].filter((x): x is number => x !== undefined);
  }
  if (t.config.pow2) return [scale / 2, scale * 2];
  return INT_SCALE_FACTORS.map((m) => Math.fround(scale * m));
}

export function scaleSearch(opts: Partial<ScaleSearchOptions> = {}): OptimisePass {
  const o = { ...SCALE_SEARCH_DEFAULTS, ...opts };
  return {
    name: 'scale-search',
    stage: 'post',
    async run(state, ctx) {
      const fit = firstSamples(freshBatches(ctx), o.samples);
      const ref = await floatOutputs(ctx.reference, { batches: fit }, ctx.outputs);
      const qdq = realiseQdq(state.model, state.plan, state.params, { foldWeights: true });
      const g = qdq.graph!;
      const view = new GraphView(g);
      const nodes = new Map(g.node.map((n) => [n.name, n]));
      // Each activation key's Q/DQ pair reads its scale from a graph input `__scale_<i>` instead of its initializer.
      const acts: { t: PlannedTensor; input: string }[] = [];
      const unused = new Set<string>();
      state.plan.tensors.forEach((t, i) => {
        if (t.role !== 'activation' || !t.config.symmetric || scaleCandidates(t, state.params.get(t.key)!.scale[0]).length === 0) return;
        const use = t.uses[0];
        const dq = view.producer.get(nodes.get(use.node)!.input[use.input]);
        const q = dq && view.producer.get(dq.input[0]);
        if (dq?.opType !== 'DequantizeLinear' || q?.opType !== 'QuantizeLinear' || q.input[0] !== t.tensor) return;
        const input = view.freshName(`__scale_${i}`); // distinct bases, so the picks cannot collide either
        unused.add(q.input[1]);
        q.input[1] = dq.input[1] = input;
        g.input.push(tensorValueInfo(input, DT.FLOAT, []));
        acts.push({ t, input });
      });
      if (!acts.length) return { state, detail: 'no activation scale to search' };
      // Each scale initializer belonged to one Q/DQ pair (realiseQdq names them afresh), now fed instead.
      g.initializer = g.initializer.filter((x) => !unused.has(x.name));
      const params = cloneParams(state.params);
      const scales = new Map(acts.map(({ t, input }) => [input, params.get(t.key)!.scale[0]]));
      const feeds = (override?: string, value?: number) =>
        Object.fromEntries([...scales].map(([k, v]) => [k, new ort.Tensor('float32', Float32Array.of(k === override ? value! : v), [])]));
      const session = await createSession(qdq, { mode: 'simulate', extraOutputs: ctx.outputs });
      let runs = 0;
      const errors = (override?: string, value?: number) => (runs++, searchErrors(session, fit, ref, ctx.outputs, feeds(override, value)));
      const better = (a: Float64Array, than: Float64Array) => (o.accept === 'lower' ? mean(a) < mean(than) : significantlyLower(than, a).lower);
      try {
        const start = await errors();
        let e = start;
        let moved = 0;
        const changed = new Set<string>();
        for (let sweep = 0; sweep < o.sweeps && runs < o.trials; sweep++) {
          let movedThisSweep = 0;
          for (const { t, input } of acts) {
            if (runs >= o.trials) break;
            // The candidate with the lowest mean among those that pass the acceptance test against the current errors.
            let best = { scale: scales.get(input)!, error: e };
            for (const c of scaleCandidates(t, best.scale)) {
              if (runs >= o.trials) break;
              const e2 = await errors(input, c);
              if (better(e2, e) && mean(e2) < mean(best.error)) best = { scale: c, error: e2 };
            }
            if (best.error !== e) {
              scales.set(input, best.scale);
              e = best.error;
              movedThisSweep++;
              changed.add(input);
            }
          }
          moved += movedThisSweep;
          if (!movedThisSweep) break;
        }
        for (const { t, input } of acts) params.get(t.key)!.scale[0] = scales.get(input)!;
        const samples = fit.reduce((s, b) => s + batchSize(b), 0);
        return {
          state: { ...state, params },
          detail: `${changed.size} of ${acts.length} activation scales moved (${moved} moves), output error on ${samples} search samples ${(mean(start) * 100).toFixed(3)}% → ${(mean(e) * 100).toFixed(3)}%, ${runs} runs`,
        };
      } finally {
        await session.release();
      }
    },
  };
}
