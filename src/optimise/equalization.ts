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
import { addFloatInitializer, clipBounds, constFloat, type ConstFloat } from '../ir/constants.ts';
import { channelConstant, matchGated, type GatedActivation } from '../ir/gated-activation.ts';
import { attrInt, GraphView, makeNode } from '../ir/graph.ts';
import type { OptimisePass } from './context.ts';
import type { TensorQuantConfig } from '../quant/config.ts';
import { fakeQuant } from '../quant/numerics.ts';
import { makeObserver } from '../calibrate/observers.ts';

/** A gated activation between a pair, matched on the tensor `z` it reads; or a HardSwish node. */
type Gate = { z: string; gated: GatedActivation } | { z: string; hardSwish: NodeProto };

interface Pair {
  first: NodeProto;
  second: NodeProto;
  /** The Clip nodes between them, whose bounds follow the first layer's channel scales. */
  clips: NodeProto[];
  /** Max/Min with a constant per-channel bound between them (an earlier equalization's clip): the bound follows too. */
  limits: { node: NodeProto; input: number }[];
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
    const limits: Pair['limits'] = [];
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
      if ((src.opType === 'Max' || src.opType === 'Min') && src.input.length === 2) {
        const k = src.input.findIndex((x) => channelConstant(view, x, w2.dims.length - 2) !== undefined);
        if (k < 0 || view.isConstant(src.input[1 - k])) break;
        limits.push({ node: src, input: k });
        [t, readers] = [src.input[1 - k], 1];
        continue;
      }
      if (!(src.opType === 'Relu' || src.opType === 'MaxPool' || (src.opType === 'Clip' && clipBounds(view, src)))) break;
      if (src.output.length > 1 && src.output[1]) break;
      if (src.opType === 'Clip') clips.push(src);
      [t, readers] = [src.input[0], 1];
    }
    if (!first || !constFloat(view, first.input[1])) continue;
    if (first.input[2] && !constFloat(view, first.input[2])) continue;
    pairs.push({ first, second, clips, limits, gates });
  }
  return pairs;
}

/** One pair's weights as the factor choice sees them: channel i of the first layer is `rows1[i]` (indices into
 * w1.data), input channel i of the second `cols2[i]`. */
export interface PairWeights {
  w1: ConstFloat;
  w2: ConstFloat;
  rows1: number[][];
  cols2: number[][];
}

/** Per channel the factor sᵢ > 0 the first layer's channel i is divided by and the second's multiplied by. */
export type FactorChoice = (p: PairWeights) => Float64Array;

/** The largest |value| of `data` at the indices `at` (a channel's range). */
const absMaxAt = (data: Float32Array, at: readonly number[]) => at.reduce((m, i) => Math.max(m, Math.abs(data[i])), 0);

/** Nagel et al.'s choice: sᵢ = √(r1ᵢ / r2ᵢ), both channels' ranges then √(r1ᵢ·r2ᵢ). */
export const rangeFactors: FactorChoice = ({ w1, w2, rows1, cols2 }) =>
  Float64Array.from(rows1, (row, c) => {
    const r1 = absMaxAt(w1.data, row);
    const r2 = absMaxAt(w2.data, cols2[c]);
    return r1 > 0 && r2 > 0 ? Math.sqrt(r1 / r2) : 1;
  });

export function equalize(input: ModelProto, iterations = 4, choose: FactorChoice = rangeFactors): { model: ModelProto; pairs: number } {
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
  const limitValues = new Map<Pair['limits'][number], { v: Float64Array; rank: number }>();
  for (const { first, clips, limits, gates } of pairs) {
    const w1 = constFloat(view, first.input[1])!;
    for (const l of limits) {
      const at = channelConstant(view, l.node.input[l.input], w1.dims.length - 2)!;
      limitValues.set(l, { v: Float64Array.from({ length: w1.dims[0] }, (_, c) => at(c)), rank: w1.dims.length });
    }
    for (const c of clips) {
      const [lo, hi] = clipBounds(view, c)!;
      bounds.set(c, { lo: new Float64Array(w1.dims[0]).fill(lo), hi: new Float64Array(w1.dims[0]).fill(hi), rank: w1.dims.length });
    }
    for (const g of gates) gateScales.set(g, { s: new Float64Array(w1.dims[0]).fill(1), rank: w1.dims.length });
  }
  for (let it = 0; it < iterations; it++) {
    for (const { first, second, clips, limits, gates } of pairs) {
      const w1 = constFloat(view, first.input[1])!;
      const w2 = constFloat(view, second.input[1])!;
      const b1 = first.input[2] ? constFloat(view, first.input[2]) : undefined;
      const C = w1.dims[0];
      const depthwise2 = attrInt(second, 'group', 1) === C && C > 1;
      const per1 = w1.data.length / C;
      const inner2 = w2.dims.slice(2).reduce((a, b) => a * b, 1);
      const chanOf2 = (i: number) => (depthwise2 ? Math.floor(i / inner2) : Math.floor(i / inner2) % w2.dims[1]);
      const rows1 = Array.from({ length: C }, (_, c) => Array.from({ length: per1 }, (_, k) => c * per1 + k));
      const cols2 = Array.from({ length: C }, (): number[] => []);
      for (let i = 0; i < w2.data.length; i++) cols2[chanOf2(i)].push(i);
      const s = choose({ w1, w2, rows1, cols2 });
      const n1 = Float32Array.from(w1.data, (v, i) => v / s[Math.floor(i / per1)]);
      const n2 = Float32Array.from(w2.data, (v, i) => v * s[chanOf2(i)]);
      view.setInput(first, 1, addFloatInitializer(view, `${first.input[1]}_cle`, w1.dims, n1));
      view.setInput(second, 1, addFloatInitializer(view, `${second.input[1]}_cle`, w2.dims, n2));
      if (b1) view.setInput(first, 2, addFloatInitializer(view, `${first.input[2]}_cle`, b1.dims, Float32Array.from(b1.data, (v, c) => v / s[c])));
      for (const l of limits) {
        const b = limitValues.get(l)!.v;
        for (let c = 0; c < C; c++) b[c] /= s[c];
      }
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
  for (const [{ node, input }, { v, rank }] of limitValues)
    view.setInput(node, input, addFloatInitializer(view, `${node.name || node.output[0]}_bound`, channelShape(v.length, rank), Float32Array.from(v)));
  for (const [gate, f] of gateScales) scaleGate(view, gate, f);
  view.pruneInitializers();
  return { model, pairs: pairs.length };
}

/** The shape [C, 1, …] of a per-channel constant that broadcasts over a layer output of the given rank. */
export function channelShape(channels: number, rank: number): number[] {
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
    if (!pairs) return { state, detail: 'no Conv pairs to equalize' };
    return { state: { ...state, model }, detail: `${pairs} Conv pairs equalized` };
  },
};

/**
 * Factors chosen against a per-tensor weight grid instead of the ranges (pass `grid-equalization`). Under FP8 (or
 * power-of-two integer) weights with one scale per tensor, a channel's rounding error depends on where its values
 * fall between grid points, and a factor sᵢ moves them there: for each channel the sᵢ in (½, 1] (2^(−k/32), k < 32;
 * a factor 2 is the same grid one binade over) with the least (relative round-trip error of the first layer's
 * channel)² + (of the second's)², each tensor's scale held at what the rule's observer gives it now, and no channel
 * pushed past its tensor's current absolute maximum (so that scale stays right). Data-free: the two relative errors
 * weigh alike because, to first order, both reach the pair's output as (relative error) × ‖w1ᵢ‖·‖w2ᵢ‖ × the input's
 * size. Depthwise channels (9 weights) gain most. mobilenetv2-7 FP8: calibration output error 16.11% → 13.27% alone,
 * only the weights quantized 9.71% → 8.03% (bench/README.md).
 */
export function gridFactors(cfg: TensorQuantConfig): FactorChoice {
  const K = 32;
  const scaleOf = (w: ConstFloat) => {
    const o = makeObserver(cfg, 'weight');
    o.observe(w.data, w.dims);
    return o.params().scale[0];
  };
  return ({ w1, w2, rows1, cols2 }) => {
    const [s1, s2] = [scaleOf(w1), scaleOf(w2)];
    const m1 = w1.data.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    const m2 = w2.data.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    return Float64Array.from(rows1, (row, c) => {
      const col = cols2[c];
      const n1 = row.reduce((a, i) => a + w1.data[i] ** 2, 0);
      const n2 = col.reduce((a, i) => a + w2.data[i] ** 2, 0);
      if (!(n1 > 0 && n2 > 0)) return 1;
      const [a1, a2] = [absMaxAt(w1.data, row), absMaxAt(w2.data, col)];
      let best = 1;
      let bestErr = Infinity;
      for (let k = 0; k < K; k++) {
        const f = 2 ** (-k / K);
        if (a1 / f > m1 || a2 * f > m2) continue;
        let e1 = 0;
        for (const i of row) e1 += (fakeQuant(w1.data[i] / f, cfg, s1, 0) * f - w1.data[i]) ** 2;
        let e2 = 0;
        for (const i of col) e2 += (fakeQuant(w2.data[i] * f, cfg, s2, 0) / f - w2.data[i]) ** 2;
        const err = e1 / n1 + e2 / n2;
        if (err < bestErr) [best, bestErr] = [f, err];
      }
      return best;
    });
  };
}

export const gridEqualization: OptimisePass = {
  name: 'grid-equalization',
  stage: 'pre',
  async run(state, ctx) {
    // A per-channel scale follows each channel's factor: nothing to align.
    if (ctx.rule.weight.perChannel) return { state, detail: 'per-channel weights: nothing to align' };
    const { model, pairs } = equalize(state.model, 2, gridFactors(ctx.rule.weight));
    if (!pairs) return { state, detail: 'no Conv pairs to align' };
    return { state: { ...state, model }, detail: `${pairs} Conv pairs aligned to the weight grid` };
  },
};
