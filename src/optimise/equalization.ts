/**
 * Cross-layer equalization (Nagel et al., "Data-Free Quantization", 2019): for Conv → (Relu/MaxPool)* → Conv, scale
 * output channel i of the first layer by 1/sᵢ and input channel i of the second by sᵢ with sᵢ = √(r1ᵢ / r2ᵢ), where
 * r are the channels' weight ranges; ReLU is positively homogeneous, so the float function is unchanged, and both
 * layers end with ranges √(r1ᵢ·r2ᵢ) — much friendlier to per-tensor (power-of-two) weight scales. Depthwise
 * layers on either side are handled; iterated a few times so chains settle.
 *
 * Clip (ReLU6) is not homogeneous with one scalar bound, but sᵢ·clip(x, lo, hi) = clip(sᵢ·x, sᵢ·lo, sᵢ·hi) holds
 * for any sᵢ > 0, so a Clip between the pair becomes Max(x, LO) → Min(·, HI) with per-channel bounds (LOᵢ = lo/sᵢ;
 * a bound that is ±∞ gets no node) and the same output name: the float function is unchanged and the quantized
 * tensors are the same. MobileNetV2's first depthwise layer, behind ReLU6, has channel ranges 2200× apart; with
 * per-tensor FP8 or power-of-two weights its small channels fall to a few levels.
 */
import { clone } from '@bufbuild/protobuf';
import { ModelProtoSchema, type ModelProto, type NodeProto } from 'onnx-buf';
import { addFloatInitializer, clipBounds, constFloat } from '../ir/constants.ts';
import { attrInt, GraphView, makeNode } from '../ir/graph.ts';
import type { OptimisePass } from './context.ts';

interface Pair {
  first: NodeProto;
  second: NodeProto;
  /** The Clip nodes between them, whose bounds follow the first layer's channel scales. */
  clips: NodeProto[];
}

function findPairs(view: GraphView): Pair[] {
  const pairs: Pair[] = [];
  for (const second of view.graph.node) {
    if (second.opType !== 'Conv') continue;
    // Per-channel positive scaling commutes with ReLU and max pooling, and with Clip once its bounds are scaled too,
    // so any chain of them may sit between.
    let src = view.producer.get(second.input[0]);
    let ok = true;
    const clips: NodeProto[] = [];
    while (src && (src.opType === 'Relu' || src.opType === 'MaxPool' || (src.opType === 'Clip' && clipBounds(view, src)))) {
      if (view.uses(src.output[0]).length !== 1 || view.graphOutputs.has(src.output[0]) || src.output.length > 1 && src.output[1]) ok = false;
      if (src.opType === 'Clip') clips.push(src);
      src = view.producer.get(src.input[0]);
    }
    if (!ok) continue;
    if (!src || src.opType !== 'Conv' || view.uses(src.output[0]).length !== 1 || view.graphOutputs.has(src.output[0])) continue;
    if (!constFloat(view, src.input[1]) || !constFloat(view, second.input[1])) continue;
    if (src.input[2] && !constFloat(view, src.input[2])) continue;
    pairs.push({ first: src, second, clips });
  }
  return pairs;
}

export function equalize(input: ModelProto, iterations = 4): { model: ModelProto; pairs: number } {
  const model = clone(ModelProtoSchema, input);
  const view = new GraphView(model.graph!);
  let pairs = findPairs(view);
  pairs = pairs.filter(({ first, second }) => {
    const w1 = constFloat(view, first.input[1])!;
    const w2 = constFloat(view, second.input[1])!;
    const g1 = attrInt(first, 'group', 1);
    const g2 = attrInt(second, 'group', 1);
    const C = w1.dims[0];
    return (g2 === 1 && w2.dims[1] === C) || (g2 === C && w2.dims[0] === C && w2.dims[1] === 1 && (g1 === 1 || g1 === C));
  });
  // Each Clip's bounds per channel of the layer before it, scaled along with that layer's outputs.
  const bounds = new Map<NodeProto, { lo: Float64Array; hi: Float64Array; rank: number }>();
  for (const { first, clips } of pairs) {
    const w1 = constFloat(view, first.input[1])!;
    for (const c of clips) {
      const [lo, hi] = clipBounds(view, c)!;
      bounds.set(c, { lo: new Float64Array(w1.dims[0]).fill(lo), hi: new Float64Array(w1.dims[0]).fill(hi), rank: w1.dims.length });
    }
  }
  for (let it = 0; it < iterations; it++) {
    for (const { first, second, clips } of pairs) {
      const w1 = constFloat(view, first.input[1])!;
      const w2 = constFloat(view, second.input[1])!;
      const b1 = first.input[2] ? constFloat(view, first.input[2]) : undefined;
      const C = w1.dims[0];
      const depthwise2 = attrInt(second, 'group', 1) === C && C > 1;
      const per1 = w1.data.length / C;
      const inner2 = w2.dims.slice(2).reduce((a, b) => a * b, 1);
      const r1 = new Float64Array(C);
      const r2 = new Float64Array(C);
      for (let i = 0; i < w1.data.length; i++) r1[Math.floor(i / per1)] = Math.max(r1[Math.floor(i / per1)], Math.abs(w1.data[i]));
      const chanOf2 = (i: number) => (depthwise2 ? Math.floor(i / inner2) : Math.floor(i / inner2) % w2.dims[1]);
      for (let i = 0; i < w2.data.length; i++) r2[chanOf2(i)] = Math.max(r2[chanOf2(i)], Math.abs(w2.data[i]));
      const s = new Float64Array(C);
      for (let c = 0; c < C; c++) s[c] = r1[c] > 0 && r2[c] > 0 ? Math.sqrt(r1[c] / r2[c]) : 1;
      const n1 = Float32Array.from(w1.data, (v, i) => v / s[Math.floor(i / per1)]);
      const n2 = Float32Array.from(w2.data, (v, i) => v * s[chanOf2(i)]);
      view.setInput(first, 1, addFloatInitializer(view, `${first.input[1]}_cle`, w1.dims, n1));
      view.setInput(second, 1, addFloatInitializer(view, `${second.input[1]}_cle`, w2.dims, n2));
      if (b1) view.setInput(first, 2, addFloatInitializer(view, `${first.input[2]}_cle`, b1.dims, Float32Array.from(b1.data, (v, c) => v / s[c])));
      for (const clip of clips) {
        const b = bounds.get(clip)!;
        for (let c = 0; c < C; c++) (b.lo[c] /= s[c]), (b.hi[c] /= s[c]);
      }
    }
    view.pruneInitializers();
  }
  for (const [clip, b] of bounds) perChannelClip(view, clip, b);
  view.pruneInitializers();
  return { model, pairs: pairs.length };
}

/**
 * Clip → Max(x, LO) → Min(·, HI) with per-channel bounds [C, 1, …] (float32), keeping the Clip's output name; a zero
 * lower bound (ReLU6) becomes a Relu, which deployment toolchains fuse into the convolution as before.
 */
function perChannelClip(view: GraphView, clip: NodeProto, b: { lo: Float64Array; hi: Float64Array; rank: number }): void {
  const steps: { op: 'Relu' | 'Max' | 'Min'; bound?: Float64Array }[] = [];
  if (b.lo.every((v) => v === 0)) steps.push({ op: 'Relu' });
  else if (Number.isFinite(b.lo[0])) steps.push({ op: 'Max', bound: b.lo });
  if (Number.isFinite(b.hi[0])) steps.push({ op: 'Min', bound: b.hi });
  if (!steps.length) return; // Clip(−∞, ∞): nothing to scale
  const dims = [b.lo.length, ...Array<number>(b.rank - 2).fill(1)];
  const at = view.graph.node.indexOf(clip);
  const base = clip.name || clip.output[0];
  let x = clip.input[0];
  view.removeNode(clip);
  steps.forEach(({ op, bound }, i) => {
    const tag = `${base}_${op.toLowerCase()}`;
    const inputs = bound ? [x, addFloatInitializer(view, tag, dims, Float32Array.from(bound))] : [x];
    const y = i === steps.length - 1 ? clip.output[0] : view.freshName(tag);
    view.addNode(makeNode(op, inputs, [y], i === steps.length - 1 && clip.name ? clip.name : tag), at + i);
    x = y;
  });
}

export const equalization: OptimisePass = {
  name: 'equalization',
  stage: 'pre',
  async run(state) {
    const { model, pairs } = equalize(state.model);
    return { state: { ...state, model }, detail: `${pairs} Conv pairs equalized` };
  },
};
