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
 *
 * Gated activations z·g(z) (hard swish — the HardSwish op, HardSigmoid + Mul, Paddle's Add → Clip → Mul → Div — and
 * SiLU) are not homogeneous either, but with z = sᵢ·z′ the product is sᵢ·(z′·g(sᵢ·z′)): the gate reads sᵢ·z′ through
 * a per-channel Mul and the product stays linear in z′ (ir/gated-activation.ts). So MobileNetV3's expand → hard
 * swish → depthwise pairs equalize too (en_number's 5×5 depthwise layer behind hard swish: channel ranges 400×
 * apart). The quantized tensors are the same; the float function changes only by rounding.
 */
import { clone } from '@bufbuild/protobuf';
import { ModelProtoSchema, type ModelProto, type NodeProto } from 'onnx-buf';
import { addFloatInitializer, clipBounds, constFloat } from '../ir/constants.ts';
import { matchGated, type GatedActivation } from '../ir/gated-activation.ts';
import { attrInt, GraphView, makeNode } from '../ir/graph.ts';
import type { OptimisePass } from './context.ts';

/** A gated activation between a pair, matched on the tensor `z` it reads; or a HardSwish node. */
type Gate = { z: string; gated: GatedActivation } | { z: string; hardSwish: NodeProto };

interface Pair {
  first: NodeProto;
  second: NodeProto;
  /** The Clip nodes between them, whose bounds follow the first layer's channel scales. */
  clips: NodeProto[];
  /** The gated activations between them, whose gates read z through the accumulated channel scales. */
  gates: Gate[];
}

/** The gated activation whose last node writes `t` (it reads z twice, so z is found from the product). */
function gatedEndingAt(view: GraphView, t: string, spatialDims: number): { z: string; gated: GatedActivation } | undefined {
  const p = view.producer.get(t);
  if (!p || (p.opType !== 'Mul' && p.opType !== 'Div')) return undefined;
  const q = view.producer.get(p.input[0]);
  const candidates = [...(p.opType === 'Mul' ? p.input : []), ...(q?.opType === 'Mul' ? q.input : [])];
  for (const z of candidates) {
    const gated = matchGated(view, z, spatialDims);
    if (gated && gated.last.output[0] === t) return { z, gated };
  }
  return undefined;
}

function findPairs(view: GraphView): Pair[] {
  const pairs: Pair[] = [];
  for (const second of view.graph.node) {
    if (second.opType !== 'Conv') continue;
    const w2 = constFloat(view, second.input[1]);
    if (!w2) continue;
    // Per-channel positive scaling commutes with ReLU and max pooling, with Clip once its bounds are scaled too, and
    // with a gated activation once its gate reads the scaled-back input, so any chain of them may sit between. Every
    // tensor on the way has exactly the chain's readers: one, or two for the input of a gated activation.
    let t = second.input[0];
    let readers = 1;
    let first: NodeProto | undefined;
    const clips: NodeProto[] = [];
    const gates: Gate[] = [];
    for (;;) {
      const src = view.producer.get(t);
      if (!src || view.uses(t).length !== readers || view.graphOutputs.has(t)) break;
      if (src.opType === 'Conv') {
        first = src;
        break;
      }
      const gate = src.opType === 'HardSwish' ? { z: src.input[0], hardSwish: src } : gatedEndingAt(view, t, w2.dims.length - 2);
      if (gate) {
        gates.push(gate);
        [t, readers] = [gate.z, 'gated' in gate ? 2 : 1];
        continue;
      }
      if (!(src.opType === 'Relu' || src.opType === 'MaxPool' || (src.opType === 'Clip' && clipBounds(view, src)))) break;
      if (src.output.length > 1 && src.output[1]) break;
      if (src.opType === 'Clip') clips.push(src);
      [t, readers] = [src.input[0], 1];
    }
    if (!first || !constFloat(view, first.input[1])) continue;
    if (first.input[2] && !constFloat(view, first.input[2])) continue;
    pairs.push({ first, second, clips, gates });
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
  // Each Clip's bounds per channel of the layer before it, scaled along with that layer's outputs; each gate's
  // factor, the product of the scales the layer's outputs were divided by.
  const bounds = new Map<NodeProto, { lo: Float64Array; hi: Float64Array; rank: number }>();
  const gateScales = new Map<Gate, { s: Float64Array; rank: number }>();
  for (const { first, clips, gates } of pairs) {
    const w1 = constFloat(view, first.input[1])!;
    for (const c of clips) {
      const [lo, hi] = clipBounds(view, c)!;
      bounds.set(c, { lo: new Float64Array(w1.dims[0]).fill(lo), hi: new Float64Array(w1.dims[0]).fill(hi), rank: w1.dims.length });
    }
    for (const g of gates) gateScales.set(g, { s: new Float64Array(w1.dims[0]).fill(1), rank: w1.dims.length });
  }
  for (let it = 0; it < iterations; it++) {
    for (const { first, second, clips, gates } of pairs) {
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
      for (const g of gates) {
        const f = gateScales.get(g)!.s;
        for (let c = 0; c < C; c++) f[c] *= s[c];
      }
    }
    view.pruneInitializers();
  }
  for (const [clip, b] of bounds) perChannelClip(view, clip, b);
  for (const [gate, f] of gateScales) scaleGate(view, gate, f);
  view.pruneInitializers();
  return { model, pairs: pairs.length };
}

/** The shape [C, 1, …] of a per-channel constant that broadcasts over a layer output of the given rank. */
function channelShape(channels: number, rank: number): number[] {
  return [channels, ...Array<number>(rank - 2).fill(1)];
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
  const dims = channelShape(b.lo.length, b.rank);
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

/**
 * The gate of z·g(z) reads z·f per channel (f [C, 1, …], float32): a Mul inserted before its first node, or the
 * factor already there (an earlier equalization) multiplied; a HardSwish node becomes Mul(z, HardSigmoid(z·f; 1/6,
 * ½)) under its output name.
 */
function scaleGate(view: GraphView, gate: Gate, f: { s: Float64Array; rank: number }): void {
  const dims = channelShape(f.s.length, f.rank);
  const base = `${gate.z}_gate_scale`;
  if ('gated' in gate && gate.gated.gateScale) {
    const mul = gate.gated.gateScale.node;
    const k = mul.input[0] === gate.z ? 1 : 0;
    const old = gate.gated.gateScale.at;
    view.setInput(mul, k, addFloatInitializer(view, base, dims, Float32Array.from(f.s, (v, c) => v * old(c))));
    return;
  }
  const reader = 'gated' in gate ? gate.gated.gateReader : gate.hardSwish;
  const at = view.graph.node.indexOf(reader);
  const factor = addFloatInitializer(view, base, dims, Float32Array.from(f.s));
  const scaled = view.freshName(`${gate.z}_scaled`);
  view.addNode(makeNode('Mul', [gate.z, factor], [scaled], scaled), at);
  if ('gated' in gate) {
    view.setInput(reader, reader.input.indexOf(gate.z), scaled);
    return;
  }
  const name = reader.name || reader.output[0];
  const sig = view.freshName(`${name}_gate`);
  view.removeNode(reader);
  view.addNode(makeNode('HardSigmoid', [scaled], [sig], sig, { alpha: { float: 1 / 6 }, beta: { float: 0.5 } }), at + 1);
  view.addNode(makeNode('Mul', [gate.z, sig], [reader.output[0]], reader.name || `${name}_mul`), at + 2);
}

export const equalization: OptimisePass = {
  name: 'equalization',
  stage: 'pre',
  async run(state) {
    const { model, pairs } = equalize(state.model);
    return { state: { ...state, model }, detail: `${pairs} Conv pairs equalized` };
  },
};
