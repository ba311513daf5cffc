/**
 * Bias correction (after Nagel et al. 2019 and AIMET's empirical variant): quantizing a layer's weight and input
 * shifts its mean output by E[Ŵx̂] − E[Wx] = Ŵ·E[x̂] − W·E[x] per output channel, where x is the layer's input as
 * the quantized network produces it and x̂ its fake-quantized value; subtracting that from the bias removes the
 * shift the layer itself adds (upstream shifts are corrected by upstream layers, so corrections do not compound —
 * correcting every layer's total output shift at once over-corrects). Means are taken per input channel over the
 * batch and spatial positions on calibration data; padding is ignored. Conv (incl. grouped/depthwise) and Gemm.
 */
import { clone } from '@bufbuild/protobuf';
import { ModelProtoSchema } from 'onnx-buf';
import { addFloatInitializer, constFloat } from '../ir/constants.ts';
import { attrInt, GraphView } from '../ir/graph.ts';
import { realiseQdq } from '../realise/qdq.ts';
import { createSession } from '../runtime/session.ts';
import { fittingBatches, type OptimisePass, type QuantState } from './context.ts';

interface Target {
  node: string;
  op: 'Conv' | 'Gemm';
  x: string;
  xHat: string;
  w: string;
  wHat: string;
  inChannels: number;
}

/** Mean over all axes but the channel axis (1 for NCHW-like, last for Gemm's [N, K]). */
function channelMeans(data: Float32Array, dims: readonly number[], op: 'Conv' | 'Gemm', acc: Float64Array): number {
  const C = acc.length;
  if (op === 'Gemm') {
    for (let i = 0; i < data.length; i++) acc[i % C] += data[i];
    return data.length / C;
  }
  const inner = dims.slice(2).reduce((a, b) => a * b, 1);
  for (let i = 0; i < data.length; i++) acc[Math.floor(i / inner) % C] += data[i];
  return data.length / C;
}

export const biasCorrection: OptimisePass = {
  name: 'bias-correction',
  stage: 'post',
  async run(state, ctx) {
    const qdq = realiseQdq(state.model, state.plan, state.params);
    const qv = new GraphView(qdq.graph!);
    const fv = new GraphView(state.model.graph!);
    const targets: Target[] = [];
    for (const l of state.plan.layers) {
      const n = qv.graph.node.find((x) => x.name === l.node);
      const fn = fv.graph.node.find((x) => x.name === l.node);
      if (!n || !fn || (n.opType !== 'Conv' && n.opType !== 'Gemm') || (n.opType === 'Gemm' && attrInt(n, 'transA', 0))) continue;
      const dq = qv.producer.get(n.input[0]);
      const wHat = constFloat(qv, n.input[1]) ? n.input[1] : qv.producer.get(n.input[1])?.opType === 'DequantizeLinear' ? n.input[1] : undefined;
      if (dq?.opType !== 'DequantizeLinear' || !wHat || !constFloat(fv, fn.input[1])) continue;
      const w = constFloat(fv, fn.input[1])!;
      const inChannels = n.opType === 'Conv' ? w.dims[1] * attrInt(n, 'group', 1) : attrInt(n, 'transB', 0) ? w.dims[1] : w.dims[0];
      targets.push({ node: l.node, op: n.opType, x: fn.input[0], xHat: n.input[0], w: fn.input[1], wHat, inChannels });
    }
    if (!targets.length) return { state, detail: 'no Conv/Gemm layers with quantized inputs' };
    const graphInputs = new Set(qdq.graph!.input.map((v) => v.name));
    const fetch = [...new Set(targets.flatMap((t) => [t.x, t.xHat, t.wHat]).filter((n) => !graphInputs.has(n) && !constFloat(qv, n)))];
    const s = await createSession(qdq, { mode: 'simulate', extraOutputs: fetch });
    const sums = new Map<string, { sum: Float64Array; count: number }>();
    const wHatValues = new Map<string, Float32Array>();
    // Means from the fitting batches, so the recipe judges the correction on data it was not estimated from.
    for (const b of fittingBatches(ctx)) {
      const r = await s.run(b, fetch);
      for (const t of targets)
        for (const name of [t.x, t.xHat]) {
          const v = graphInputs.has(name) ? b[name] : r[name];
          const e = sums.get(name) ?? { sum: new Float64Array(t.inChannels), count: 0 };
          e.count += channelMeans(v.data as Float32Array, v.dims, t.op, e.sum);
          sums.set(name, e);
        }
      for (const t of targets) if (!wHatValues.has(t.wHat)) wHatValues.set(t.wHat, constFloat(qv, t.wHat)?.data ?? (r[t.wHat].data as Float32Array));
    }
    await s.release();
    const model = clone(ModelProtoSchema, state.model);
    const mv = new GraphView(model.graph!);
    for (const t of targets) {
      const n = mv.graph.node.find((x) => x.name === t.node)!;
      const w = constFloat(mv, t.w)!;
      const wq = wHatValues.get(t.wHat)!;
      const mx = sums.get(t.x)!;
      const mxh = sums.get(t.xHat)!;
      const Ex = (c: number) => mx.sum[c] / mx.count;
      const Exh = (c: number) => mxh.sum[c] / mxh.count;
      let Cout: number;
      const shift: number[] = [];
      if (t.op === 'Conv') {
        Cout = w.dims[0];
        const group = attrInt(n, 'group', 1);
        const cinG = w.dims[1];
        const k = w.dims.slice(2).reduce((a, b) => a * b, 1);
        const coutG = Cout / group;
        for (let co = 0; co < Cout; co++) {
          let d = 0;
          for (let ci = 0; ci < cinG; ci++) {
            const c = Math.floor(co / coutG) * cinG + ci;
            for (let j = 0; j < k; j++) {
              const idx = (co * cinG + ci) * k + j;
              d += wq[idx] * Exh(c) - w.data[idx] * Ex(c);
            }
          }
          shift.push(d);
        }
      } else {
        const transB = attrInt(n, 'transB', 0);
        const [K, N] = transB ? [w.dims[1], w.dims[0]] : [w.dims[0], w.dims[1]];
        Cout = N;
        const alpha = n.attribute.find((a) => a.name === 'alpha')?.f ?? 1;
        for (let co = 0; co < N; co++) {
          let d = 0;
          for (let ci = 0; ci < K; ci++) {
            const idx = transB ? co * K + ci : ci * N + co;
            d += wq[idx] * Exh(ci) - w.data[idx] * Ex(ci);
          }
          shift.push(alpha * d);
        }
      }
      const bias = n.input[2] ? constFloat(mv, n.input[2]) : undefined;
      if (n.input[2] && (!bias || (bias.data.length !== Cout && bias.data.length !== 1))) continue;
      const beta = t.op === 'Gemm' ? (n.attribute.find((a) => a.name === 'beta')?.f ?? 1) : 1;
      const nb = Float32Array.from({ length: Cout }, (_, c) => (bias ? beta * bias.data[bias.data.length === 1 ? 0 : c] : 0) - shift[c]);
      while (n.input.length < 3) n.input.push('');
      mv.setInput(n, 2, addFloatInitializer(mv, `${t.node}_bias_corrected`, [Cout], nb));
      if (t.op === 'Gemm') n.attribute = n.attribute.filter((a) => a.name !== 'beta');
    }
    mv.pruneInitializers();
    const next: QuantState = { ...state, model };
    return { state: next, detail: `${targets.length} layers corrected` };
  },
};
