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
 * Cost: one run over the search samples per trial, of the network from the trial's activation on (a stepper walks
 * the network once per sweep and keeps the values the rest reads). Same moves and errors as whole-network trials
 * (tested), in less time where the heavy layers come early: the pass alone, int8 per-channel unless said, whole
 * network → from the activation on (2-core VM, another job running): resnet20_cifar10 42.3 → 24.8 s, yunet_120x160
 * power-of-2 9.8 → 5.4 s and FP8 18.9 → 6.0 s, blazeface 18.2 → 12.4 s, ch_ppocr_mobile_v2.0_cls FP8 27.7 → 12.0 s,
 * squeezenet_cifar10 2.6 → 2.6 s (the FP8 figures also gain the float32 emulation of FP8 Q/DQ pairs, which a scale
 * fed as a graph input had ruled out). Activations are visited in plan order and each tries its candidates; one
 * keeps the candidate with the lowest mean error when it is below the current one ('lower', the default), or only
 * among those whose per-sample errors are significantly lower (`accept: 'significant'`, the recipe's paired test).
 * Measured on en_number (IC15), the pass alone: per-channel 21.86% → 44.58% ('lower') vs 43.67% ('significant'),
 * power-of-2 3.51% → 5.15% vs 4.72% (10.06% with 'lower' on the fitting batches, before the fresh split). After
 * `best`, 'lower' moves follow the search samples' noise (power-of-2: search batches 1.577% → 1.457%, measuring
 * 1.785% → 1.949%) and the recipe rolls them back; 'significant' makes no move there. The default is the one that
 * gains alone. `best` runs it last (recipes.ts), where its moves held on mobilenetv2-7 per-channel (measuring error
 * 1.199% → 1.056%) and the recipe's own test rolls them back elsewhere.
 */
import { TensorProto_DataType as DT, type GraphProto, type ModelProto, type NodeProto } from 'onnx-buf';
import { FP8_SCALE_CANDIDATES } from '../calibrate/observers.ts';
import { GraphView, nodeReads } from '../ir/graph.ts';
import { makeTensor } from '../onnx/tensor-codec.ts';
import { batchSize } from '../calibrate/calibrate.ts';
import type { PlannedTensor } from '../quant/plan.ts';
import { realiseQdq } from '../realise/qdq.ts';
import { createStepper } from '../runtime/stepper.ts';
import { cloneParams, firstSamples, floatOutputs, freshBatches, mean, searchErrorsOf, significantlyLower, type OptimisePass } from './context.ts';

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
  /** Run each trial from the searched activation on, reusing the values before it (exact; default true). */
  reuse: boolean;
}

export const SCALE_SEARCH_DEFAULTS: ScaleSearchOptions = { trials: 512, sweeps: 2, samples: 128, accept: 'lower', reuse: true };

/** Integer (not power-of-two) scales: these factors of the current scale, rounded to float32. */
export const INT_SCALE_FACTORS = [0.8, 0.9, 1.1, 1.25] as const;

/**
 * Whether walking the graph to the input of each of `qs` in turn (running the nodes it needs) never runs one of the
 * later ones: no QuantizeLinear is an ancestor of an earlier one's input.
 */
export function visitsInGraphOrder(g: GraphProto, qs: readonly NodeProto[]): boolean {
  const view = new GraphView(g);
  const position = new Map(qs.map((q, k) => [q, k]));
  return qs.every((q, k) => {
    const seen = new Set<NodeProto>();
    const stack = [view.producer.get(q.input[0])];
    while (stack.length) {
      const n = stack.pop();
      if (!n || seen.has(n)) continue;
      if ((position.get(n) ?? -1) > k) return false;
      seen.add(n);
      for (const x of nodeReads(n)) stack.push(view.producer.get(x));
    }
    return true;
  });
}

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
      // Each activation key's Q/DQ pair reads its scale from an initializer of its own, `__scale_<i>`, which a trial
      // replaces (realiseQdq names every scale initializer afresh, so the old one had no other reader).
      const acts: { t: PlannedTensor; name: string; q: NodeProto }[] = [];
      const unused = new Set<string>();
      state.plan.tensors.forEach((t, i) => {
        if (t.role !== 'activation' || !t.config.symmetric || scaleCandidates(t, state.params.get(t.key)!.scale[0]).length === 0) return;
        const use = t.uses[0];
        const dq = view.producer.get(nodes.get(use.node)!.input[use.input]);
        const q = dq && view.producer.get(dq.input[0]);
        if (dq?.opType !== 'DequantizeLinear' || q?.opType !== 'QuantizeLinear' || q.input[0] !== t.tensor) return;
        const name = view.freshName(`__scale_${i}`); // distinct bases, so the picks cannot collide either
        unused.add(q.input[1]);
        q.input[1] = dq.input[1] = name;
        acts.push({ t, name, q });
      });
      if (!acts.length) return { state, detail: 'no activation scale to search' };
      const others = g.initializer.filter((x) => !unused.has(x.name));
      const params = cloneParams(state.params);
      // The scale initializers as they stand (the current scales are `params`'), rebuilt only for the one a move changes.
      const scaleTensors = new Map(acts.map(({ t, name }) => [name, makeTensor(name, DT.FLOAT, [], [params.get(t.key)!.scale[0]])]));
      const modelWith = (override?: string, value?: number): ModelProto => ({
        ...qdq,
        graph: { ...g, initializer: [...others, ...[...scaleTensors].map(([k, t]) => (k === override ? makeTensor(k, DT.FLOAT, [], [value!]) : t))] },
      });
      // A trial changes one scale, so only the nodes from its QuantizeLinear on need to run: a stepper walks the
      // network in visiting order, keeping the values the rest reads (runtime/stepper.ts), and each trial runs the
      // part not yet walked from them — bit-identical to a whole-network run (simulate: every node alone). On
      // agllnet_256 the Convs after an activation hold 29% of the network's multiply-adds on average (road
      // segmentation 41%, tbefn 35%): the early, high-resolution layers dominate. Exact only if walking to an
      // activation never runs a QuantizeLinear visited later; otherwise every trial runs the whole network, in a
      // session of its own (yunet power-of-2 forced that way: 12.9 s against 9.8 s with one session for all trials;
      // none of the 32 zoo and corpus models checked falls back).
      const reuse = o.reuse && visitsInGraphOrder(g, acts.map((a) => a.q));
      let runs = 0;
      let stepper = createStepper(fit, 'simulate');
      const errors = async (override?: string, value?: number) => {
        runs++;
        const v = await stepper.peek(modelWith(override, value), ctx.outputs);
        return searchErrorsOf((b) => v.get(b), fit, ref, ctx.outputs);
      };
      const better = (a: Float64Array, than: Float64Array) => (o.accept === 'lower' ? mean(a) < mean(than) : significantlyLower(than, a).lower);
      try {
        const start = await errors();
        let e = start;
        let moved = 0;
        const changed = new Set<string>();
        for (let sweep = 0; sweep < o.sweeps && runs < o.trials; sweep++) {
          if (sweep > 0) {
            stepper.close();
            stepper = createStepper(fit, 'simulate');
          }
          let movedThisSweep = 0;
          for (const { t, name } of acts) {
            if (runs >= o.trials) break;
            if (reuse) await stepper.advance(modelWith(), [t.tensor]);
            // The candidate with the lowest mean among those that pass the acceptance test against the current errors.
            let best = { scale: params.get(t.key)!.scale[0], error: e };
            for (const c of scaleCandidates(t, best.scale)) {
              if (runs >= o.trials) break;
              const e2 = await errors(name, c);
              if (better(e2, e) && mean(e2) < mean(best.error)) best = { scale: c, error: e2 };
            }
            if (best.error !== e) {
              params.get(t.key)!.scale[0] = best.scale;
              scaleTensors.set(name, makeTensor(name, DT.FLOAT, [], [best.scale]));
              e = best.error;
              movedThisSweep++;
              changed.add(name);
            }
          }
          moved += movedThisSweep;
          if (!movedThisSweep) break;
        }
        const samples = fit.reduce((s, b) => s + batchSize(b), 0);
        return {
          state: { ...state, params },
          detail: `${changed.size} of ${acts.length} activation scales moved (${moved} moves), output error on ${samples} search samples ${(mean(start) * 100).toFixed(3)}% → ${(mean(e) * 100).toFixed(3)}%, ${runs} runs${reuse ? ', each from its activation on' : ''}`,
        };
      } finally {
        stepper.close();
      }
    },
  };
}
