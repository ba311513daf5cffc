/**
 * Bias correction (after Nagel et al. 2019 and AIMET's empirical variant): quantizing a layer's weight and input
 * shifts its mean output by E[conv(x̂, Ŵ)] − E[conv(x, W)] per output channel, where x is the layer's input as the
 * quantized network produces it and x̂ its fake-quantized value; subtracting that from the bias removes the shift the
 * layer itself adds (upstream shifts are corrected by upstream layers, so corrections do not compound — correcting
 * every layer's total output shift at once over-corrects).
 *
 * The shift is measured, not derived from input means: each layer gets a float twin in the simulation graph (the
 * same op and attributes, reading x and the float weight), and the per-channel mean of (quantized output − twin
 * output) over the batch and spatial positions is taken on calibration data. The closed form Ŵ·E[x̂] − W·E[x] (used
 * up to the twenty-eighth session) assumes every kernel tap sees every input position; with padding the border taps
 * see zeros, and on thin feature maps that is many taps — en_number's 5×5 depthwise layers on 2- and 4-row maps see 2
 * and 3.5 of their 5 kernel rows on average, so their shifts were overstated up to 2.5-fold, and after weight rounding
 * in `best` the pass raised the output error under all three rules (per-channel 1.15% → 1.99%). Conv (any padding,
 * stride, dilation, group), Gemm, and MatMul followed by an Add of a per-column constant (its bias, as transformers
 * export it).
 */
import { clone } from '@bufbuild/protobuf';
import { AttributeProtoSchema, ModelProtoSchema, TensorProto_DataType as DT, type NodeProto } from 'onnx-buf';
import { addFloatInitializer, constFloat } from '../ir/constants.ts';
import { GraphView, makeNode, opsetVersion } from '../ir/graph.ts';
import { makeTensor } from '../onnx/tensor-codec.ts';
import { realiseQdq } from '../realise/qdq.ts';
import { createSession } from '../runtime/session.ts';
import { fittingBatches, type OptimisePass, type QuantState } from './context.ts';

interface Target {
  node: string;
  op: 'Conv' | 'Gemm' | 'MatMul';
  /** MatMul: the Add after it whose constant input is the bias to correct. */
  biasAdd?: { output: string; input: number };
  /** Per-channel mean of (quantized − twin) output in one batch, and the shape it was taken over. */
  mean: string;
  shape: string;
}

/** A MatMul's bias: the one node reading its output is an Add whose other input is a constant of N values (the
 * weight's columns), shaped [N] or [1, …, 1, N], so it adds one value per output channel on the last axis. */
function matMulBias(v: GraphView, n: NodeProto, outChannels: number): { output: string; input: number } | undefined {
  const readers = v.uses(n.output[0]);
  if (readers.length !== 1 || readers[0].opType !== 'Add' || v.graphOutputs.has(n.output[0])) return undefined;
  const add = readers[0];
  const input = add.input[0] === n.output[0] ? 1 : 0;
  const b = constFloat(v, add.input[input]);
  if (!b || b.data.length !== outChannels || b.dims.at(-1) !== outChannels) return undefined;
  return { output: add.output[0], input };
}

export const biasCorrection: OptimisePass = {
  name: 'bias-correction',
  stage: 'post',
  async run(state, ctx) {
    const qdq = realiseQdq(state.model, state.plan, state.params);
    const qv = new GraphView(qdq.graph!);
    const fv = new GraphView(state.model.graph!);
    const opset = opsetVersion(qdq);
    const targets: Target[] = [];
    for (const l of state.plan.layers) {
      const n = qv.graph.node.find((x) => x.name === l.node);
      const fn = fv.graph.node.find((x) => x.name === l.node);
      if (!n || !fn || (n.opType !== 'Conv' && n.opType !== 'Gemm' && n.opType !== 'MatMul')) continue;
      const w = constFloat(fv, fn.input[1]);
      if (qv.producer.get(n.input[0])?.opType !== 'DequantizeLinear' || !w) continue;
      const op = n.opType;
      // A MatMul has no bias of its own: the constant of the Add after it (read in the float model, where the pass
      // writes) takes the correction; without one it is left alone.
      const biasAdd = op === 'MatMul' ? matMulBias(fv, fn, w.dims.at(-1)!) : undefined;
      if (op === 'MatMul' && !biasAdd) continue;
      // The twin: the layer in float on the quantized network's own input x (the tensor the QuantizeLinear reads,
      // named as in the float model), with the float weight and the same bias, so only this layer's quantization
      // separates the two outputs.
      const t = (k: string) => qv.freshName(`${l.node}__bc_${k}`);
      const [twin, diff, rows, mean, shape] = ['twin', 'diff', 'rows', 'mean', 'shape'].map(t);
      const wf = addFloatInitializer(qv, `${l.node}__bc_w`, w.dims, w.data);
      const nodes = [makeNode(op, [fn.input[0], wf, ...n.input.slice(2)], [twin], twin, {}), makeNode('Sub', [n.output[0], twin], [diff], diff)];
      nodes[0].attribute = n.attribute.map((a) => clone(AttributeProtoSchema, a));
      // The mean over every axis but the channel axis: 1 for Conv's [N, C, …], the last for Gemm's [M, N] and for
      // MatMul's […, N] (taken as rows of N).
      let reduced = diff;
      if (op === 'MatMul') {
        const rs = qv.freshName(`${l.node}__bc_rowshape`);
        qv.addInitializer(makeTensor(rs, DT.INT64, [2], [-1, w.dims.at(-1)!]));
        nodes.push(makeNode('Reshape', [diff, rs], [rows], rows));
        reduced = rows;
      }
      const axes = op === 'Conv' ? [0, ...Array.from({ length: w.dims.length - 2 }, (_, i) => i + 2)] : [0];
      if (opset >= 18) {
        const a = qv.freshName(`${l.node}__bc_axes`);
        qv.addInitializer(makeTensor(a, DT.INT64, [axes.length], axes));
        nodes.push(makeNode('ReduceMean', [reduced, a], [mean], mean, { keepdims: 0 }));
      } else nodes.push(makeNode('ReduceMean', [reduced], [mean], mean, { axes, keepdims: 0 }));
      nodes.push(makeNode('Shape', [reduced], [shape], shape));
      for (const x of nodes) qv.addNode(x);
      targets.push({ node: l.node, op, biasAdd, mean, shape });
    }
    if (!targets.length) return { state, detail: 'no Conv, Gemm or MatMul-with-bias layers with quantized inputs' };
    const fetch = targets.flatMap((t) => [t.mean, t.shape]);
    const s = await createSession(qdq, { mode: 'simulate', extraOutputs: fetch });
    const sums = new Map<string, { sum: Float64Array; count: number }>();
    // Means from the fitting batches, so the recipe judges the correction on data it was not estimated from. Each
    // batch's mean is weighted by the positions it was taken over (batches may differ in size or shape).
    for (const b of fittingBatches(ctx)) {
      const r = await s.run(b, fetch);
      for (const t of targets) {
        const m = r[t.mean].data as Float32Array;
        const dims = Array.from(r[t.shape].data as BigInt64Array, Number);
        const count = dims.reduce((a, d) => a * d, 1) / m.length;
        const e = sums.get(t.node) ?? { sum: new Float64Array(m.length), count: 0 };
        for (let c = 0; c < m.length; c++) e.sum[c] += m[c] * count;
        e.count += count;
        sums.set(t.node, e);
      }
    }
    await s.release();
    const model = clone(ModelProtoSchema, state.model);
    const mv = new GraphView(model.graph!);
    let corrected = 0;
    for (const t of targets) {
      const { sum, count } = sums.get(t.node)!;
      const Cout = sum.length;
      if (t.biasAdd) {
        const add = mv.producer.get(t.biasAdd.output)!;
        const b = constFloat(mv, add.input[t.biasAdd.input])!;
        const nb = Float32Array.from(b.data, (v, c) => v - sum[c] / count);
        mv.setInput(add, t.biasAdd.input, addFloatInitializer(mv, `${t.node}_bias_corrected`, b.dims, nb));
        corrected++;
        continue;
      }
      const n = mv.graph.node.find((x) => x.name === t.node)!;
      const bias = n.input[2] ? constFloat(mv, n.input[2]) : undefined;
      if (n.input[2] && (!bias || (bias.data.length !== Cout && bias.data.length !== 1))) continue;
      // Gemm adds beta·C: the corrected bias is written with beta folded in and the attribute dropped.
      const beta = t.op === 'Gemm' ? (n.attribute.find((a) => a.name === 'beta')?.f ?? 1) : 1;
      const nb = Float32Array.from({ length: Cout }, (_, c) => (bias ? beta * bias.data[bias.data.length === 1 ? 0 : c] : 0) - sum[c] / count);
      while (n.input.length < 3) n.input.push('');
      mv.setInput(n, 2, addFloatInitializer(mv, `${t.node}_bias_corrected`, [Cout], nb));
      if (t.op === 'Gemm') n.attribute = n.attribute.filter((a) => a.name !== 'beta');
      corrected++;
    }
    mv.pruneInitializers();
    const next: QuantState = { ...state, model };
    return { state: next, detail: `${corrected} layers corrected` };
  },
};
