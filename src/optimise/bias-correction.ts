/**
 * Empirical bias correction: quantization shifts each layer's mean output; measure the per-channel mean of
 * (quantized − float) output on calibration data, with the whole network quantized, and subtract it from the
 * layer's bias. Corrections interact (a corrected layer changes the inputs of the next), so it runs a few rounds,
 * each measured; Conv/ConvTranspose (channel axis 1) and Gemm (last axis) only — MatMul has no bias to absorb it.
 */
import { clone } from '@bufbuild/protobuf';
import { ModelProtoSchema } from 'onnx-buf';
import { addFloatInitializer, constFloat } from '../ir/constants.ts';
import { attrInt, GraphView } from '../ir/graph.ts';
import { realiseQdq } from '../realise/qdq.ts';
import { createSession } from '../runtime/session.ts';
import { floatOutputs, outputError, type OptimisePass, type QuantState } from './context.ts';

interface Shift {
  node: string;
  output: string;
  channels: number;
  axis: 'channel1' | 'last';
}

export const biasCorrection: OptimisePass = {
  name: 'bias-correction',
  stage: 'post',
  async run(state, ctx) {
    const view = new GraphView(state.model.graph!);
    const targets: Shift[] = [];
    for (const l of state.plan.layers) {
      const n = view.graph.node.find((x) => x.name === l.node);
      if (!n || !['Conv', 'ConvTranspose', 'Gemm'].includes(n.opType)) continue;
      const w = constFloat(view, n.input[1]);
      if (!w) continue;
      const C = n.opType === 'Conv' ? w.dims[0] : n.opType === 'ConvTranspose' ? w.dims[1] * attrInt(n, 'group', 1) : attrInt(n, 'transB', 0) ? w.dims[0] : w.dims[1];
      targets.push({ node: n.name, output: n.output[0], channels: C, axis: n.opType === 'Gemm' ? 'last' : 'channel1' });
    }
    if (!targets.length) return { state, detail: 'no Conv/Gemm layers' };
    const ref = await floatOutputs(ctx.reference, ctx, targets.map((t) => t.output));
    let best: QuantState = state;
    let bestErr = await outputError(state, ctx);
    let rounds = 0;
    for (let round = 0; round < 3; round++) {
      const q = realiseQdq(best.model, best.plan, best.params);
      const s = await createSession(q, { mode: 'simulate', extraOutputs: targets.map((t) => t.output) });
      const sums = targets.map((t) => ({ sum: new Float64Array(t.channels), count: 0 }));
      for (let b = 0; b < ctx.batches.length; b++) {
        const r = await s.run(ctx.batches[b], targets.map((t) => t.output));
        targets.forEach((t, i) => {
          const qa = r[t.output].data as Float32Array;
          const fa = ref.get(t.output)![b];
          const dims = r[t.output].dims;
          const inner = t.axis === 'last' ? 1 : dims.slice(2).reduce((a, c) => a * c, 1);
          for (let k = 0; k < qa.length; k++) {
            const c = t.axis === 'last' ? k % t.channels : Math.floor(k / inner) % t.channels;
            sums[i].sum[c] += qa[k] - fa[k];
          }
          sums[i].count += qa.length / t.channels;
        });
      }
      await s.release();
      const model = clone(ModelProtoSchema, best.model);
      const mv = new GraphView(model.graph!);
      targets.forEach((t, i) => {
        const n = mv.graph.node.find((x) => x.name === t.node)!;
        const bias = n.input[2] ? constFloat(mv, n.input[2]) : undefined;
        const nb = new Float32Array(t.channels);
        for (let c = 0; c < t.channels; c++) nb[c] = (bias ? bias.data[bias.data.length === 1 ? 0 : c] : 0) - sums[i].sum[c] / sums[i].count;
        while (n.input.length < 3) n.input.push('');
        mv.setInput(n, 2, addFloatInitializer(mv, `${t.node}_bias_corrected`, [t.channels], nb));
      });
      mv.pruneInitializers();
      const candidate: QuantState = { ...best, model };
      const err = await outputError(candidate, ctx);
      ctx.log(`bias-correction round ${round + 1}: output error ${(bestErr * 100).toFixed(3)}% → ${(err * 100).toFixed(3)}%`);
      if (!(err < bestErr)) break;
      best = candidate;
      bestErr = err;
      rounds++;
    }
    return { state: best, detail: `${targets.length} layers, ${rounds} round(s) kept` };
  },
};
