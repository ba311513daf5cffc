/**
 * Range search by layer-output error: for each quantized activation, try candidate scales and keep the one whose
 * consumer layers' outputs are closest to the float network's — instead of judging the tensor's own rounding error.
 * The candidates respect the rule: integer scales are the observer's scale × {0.4 … 1.3}; power-of-two scales are
 * the observer's 2^k, 2^(k−1) and 2^(k+1) (floor or ceil of log2); FP8 scales are the rule's candidate set.
 * Each layer is evaluated alone in a small model (its activation Q/DQ with the scale as an input, its quantized
 * weight), fed with the activation as the quantized network produces it, against the float network's output.
 */
import { clone, create } from '@bufbuild/protobuf';
import { ModelProtoSchema, ValueInfoProtoSchema, TypeProtoSchema, TypeProto_TensorSchema, TensorProto_DataType as DT, type ModelProto } from 'onnx-buf';
import * as ort from 'onnxruntime-node';
import { batchSize, type Feeds } from '../calibrate/calibrate.ts';
import { FP8_SCALE_CANDIDATES } from '../calibrate/observers.ts';
import { GraphView } from '../ir/graph.ts';
import { realiseQdq } from '../realise/qdq.ts';
import { createSession } from '../runtime/session.ts';
import { createStepper, spillNote } from '../runtime/stepper.ts';
import type { PlannedTensor } from '../quant/plan.ts';
import { cloneParams, fittingBatches, outputError, type OptimisePass, type QuantState } from './context.ts';

function candidates(t: PlannedTensor, scale: number): number[] {
  if (t.config.format !== 'int') return [...FP8_SCALE_CANDIDATES];
  if (t.config.pow2) return [scale / 2, scale, scale * 2];
  return [0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1, 1.1, 1.2, 1.3].map((m) => Math.fround(scale * m));
}

/** The consumers of one activation as a stand-alone model: inputs `x` (the activation) and `scale`. */
function layerModel(qdq: ModelProto, t: PlannedTensor): { model: ModelProto; outputs: string[] } | undefined {
  const view = new GraphView(qdq.graph!);
  const nodes = new Set<ReturnType<GraphView['uses']>[number]>();
  const outputs: string[] = [];
  for (const u of t.uses) {
    const n = view.graph.node.find((x) => x.name === u.node);
    if (!n) return undefined;
    nodes.add(n);
    outputs.push(n.output[0]);
    // Pull in the DequantizeLinear (and QuantizeLinear) nodes feeding it.
    for (const i of n.input) {
      const dq = view.producer.get(i);
      if (dq?.opType !== 'DequantizeLinear') continue;
      nodes.add(dq);
      const q = view.producer.get(dq.input[0]);
      if (q?.opType === 'QuantizeLinear') nodes.add(q);
    }
  }
  const model = clone(ModelProtoSchema, qdq);
  const g = model.graph!;
  const keep = new Set([...nodes].map((n) => n.name));
  g.node = g.node.filter((n) => keep.has(n.name));
  // Every Q/DQ of this activation reads the scale from a graph input instead of its initializer.
  for (const n of g.node) {
    if (n.opType === 'QuantizeLinear' && n.input[0] === t.tensor) {
      const dq = g.node.find((x) => x.opType === 'DequantizeLinear' && x.input[0] === n.output[0]);
      n.input[1] = '__scale';
      if (dq) dq.input[1] = '__scale';
    }
  }
  const produced = new Set(g.node.flatMap((n) => n.output));
  const inits = new Set(g.initializer.map((x) => x.name));
  const needed = new Set(g.node.flatMap((n) => n.input).filter((i) => i && !produced.has(i)));
  g.initializer = g.initializer.filter((x) => needed.has(x.name));
  const floatType = () => create(TypeProtoSchema, { value: { case: 'tensorType', value: create(TypeProto_TensorSchema, { elemType: DT.FLOAT }) } });
  g.input = [...needed].filter((n) => !inits.has(n)).map((name) => create(ValueInfoProtoSchema, { name, type: floatType() }));
  if (g.input.some((v) => v.name !== t.tensor && v.name !== '__scale')) return undefined; // needs other activations
  g.output = outputs.map((name) => create(ValueInfoProtoSchema, { name }));
  return { model, outputs };
}

/** Samples the search scores each candidate on, at least (see `searchBatches`). */
export const SEARCH_SAMPLES = 8;

/**
 * The first two fitting batches, or more until they hold SEARCH_SAMPLES samples: with batch-1 models two batches are
 * two images, and scales fitted to them raised the error on the measuring batches (srcnn per-channel: 0.159% →
 * 0.234%, rolled back; fitted to 8 images: → 0.068%, kept, PSNR 26.86 → 27.05 dB on Set5+Set14).
 */
export function searchBatches(fit: readonly Feeds[]): Feeds[] {
  let samples = 0;
  let n = 0;
  while (n < fit.length && (n < 2 || samples < SEARCH_SAMPLES)) samples += batchSize(fit[n++]);
  return fit.slice(0, n);
}

export const rangeSearch: OptimisePass = {
  name: 'range-search',
  stage: 'post',
  async run(state, ctx) {
    const acts = state.plan.tensors.filter((t) => t.role === 'activation' && t.config.symmetric);
    if (!acts.length) return { state, detail: 'no symmetric activations' };
    const before = await outputError(state, ctx);
    const params = cloneParams(state.params);
    const qdq = realiseQdq(state.model, state.plan, state.params);
    // Fitted on other batches than the ones the recipe judges the pass by.
    const batches = searchBatches(fittingBatches(ctx));
    // Walked in graph order, one activation at a time: the quantized network's value of each (all scales as
    // calibrated) and the float network's outputs of its consumers, without holding every activation at once
    // (agllnet_256: 343 MB of layer inputs per image).
    const position = new Map(qdq.graph!.node.flatMap((n, i) => n.output.map((o) => [o, i] as const)));
    const ordered = [...acts].sort((a, b) => (position.get(a.tensor) ?? -1) - (position.get(b.tensor) ?? -1));
    const qStep = createStepper(batches, 'simulate');
    const fStep = createStepper(batches, 'float');
    let changed = 0;
    let spilled = '';
    try {
      for (const t of ordered) {
        const lm = layerModel(qdq, t);
        if (!lm) continue;
        const xq = await qStep.advance(qdq, [t.tensor]);
        await fStep.advance(ctx.reference, [t.tensor]);
        const ref = await fStep.peek(ctx.reference, lm.outputs);
        const s = await createSession(lm.model, { mode: 'simulate' });
        const current = params.get(t.key)!.scale[0];
        const tried = candidates(t, current);
        // Batch by batch (each batch's values read once, from the stepper's files where it spilled them), every
        // candidate's squared error summed over the batches in order.
        const errs = new Float64Array(tried.length);
        try {
          for (let b = 0; b < batches.length; b++) {
            const x = xq.get(b)[t.tensor];
            const f = ref.get(b);
            for (const [ci, c] of tried.entries()) {
              const r = await s.run({ [t.tensor]: x, __scale: new ort.Tensor('float32', Float32Array.of(c), []) }, lm.outputs);
              for (const o of lm.outputs) {
                const a = r[o].data as Float32Array;
                const fo = f[o].data as Float32Array;
                for (let i = 0; i < a.length; i++) errs[ci] += (a[i] - fo[i]) ** 2;
              }
            }
          }
        } finally {
          await s.release();
        }
        let bestScale = current;
        let bestErr = Infinity;
        for (const [ci, c] of tried.entries()) {
          // Ties keep the observer's scale (it is tried in order; strict improvement needed).
          if (errs[ci] < bestErr || (errs[ci] === bestErr && c === current)) {
            bestErr = errs[ci];
            bestScale = c;
          }
        }
        if (bestScale !== current) {
          params.get(t.key)!.scale[0] = bestScale;
          changed++;
        }
      }
      spilled = spillNote([qStep, fStep]);
    } finally {
      qStep.close();
      fStep.close();
    }
    const candidate: QuantState = { ...state, params };
    const after = await outputError(candidate, ctx);
    ctx.log(`range-search: ${changed}/${acts.length} scales changed; output error ${(before * 100).toFixed(3)}% → ${(after * 100).toFixed(3)}%${spilled}`);
    return after < before ? { state: candidate, detail: `${changed} of ${acts.length} activation scales changed${spilled}` } : { state, detail: `no improvement${spilled}` };
  },
};
