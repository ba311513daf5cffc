/**
 * The elementwise activation a layer's output feeds, as its derivative σ'(z). Weight rounding uses it to weigh each
 * output position by how much an error there survives the activation (first order: σ(ẑ) − σ(z) ≈ σ'(z)·(ẑ − z)), as
 * AdaRound's objective ‖σ(Wx) − σ(Ŵx)‖² does: after a ReLU the errors at inactive positions vanish, so fitting them
 * only spends the rounding's freedom where it cannot help.
 *
 * Recognised, on a tensor that is not a graph output: Relu, LeakyRelu, Clip with constant bounds (ReLU6), HardSigmoid,
 * HardSwish, Sigmoid, Tanh, and the gated forms with the tensor read twice (ir/gated-activation.ts) — z·σ(z) (SiLU/swish:
 * Sigmoid + Mul, also with HardSigmoid) and Paddle's hard swish z·clip(z + a, lo, hi)/d (Add → Clip → Mul → Div or
 * Mul), also with equalization's per-channel scale at the gate's entrance. Anything
 * else (a residual Add, a second reader, a Conv) is linear to first order here and gets no slope. Also the
 * per-channel clip that equalization leaves where a ReLU6 stood, Relu (or Max with a constant) → Min with constant
 * per-channel bounds: its slope is 1 strictly between channel c's bounds, as for Clip.
 */
import type { NodeProto } from 'onnx-buf';
import { attrFloat, attrInt, attrInts, type GraphView } from '../ir/graph.ts';
import { decodeTensor } from '../onnx/tensor-codec.ts';
import { clipBounds } from '../ir/constants.ts';
import { channelConstant, hardSigmoidSlope, matchGated, otherInput, sigmoid } from '../ir/gated-activation.ts';

/** σ'(z) at a position of output channel `channel` (read by per-channel bounds and equalization's gate scales). */
export type Slope = (z: number, channel: number) => number;

export interface Activation {
  /** What was recognised, for the pass's report. */
  name: string;
  slope: Slope;
}

/** σ'(z) of a single-input elementwise activation node, or undefined. */
function unarySlope(view: GraphView, n: NodeProto): Activation | undefined {
  switch (n.opType) {
    case 'Relu':
      return { name: 'Relu', slope: (z) => (z > 0 ? 1 : 0) };
    case 'LeakyRelu': {
      const a = attrFloat(n, 'alpha', 0.01);
      return { name: 'LeakyRelu', slope: (z) => (z > 0 ? 1 : a) };
    }
    case 'Clip': {
      const b = clipBounds(view, n);
      return b && { name: 'Clip', slope: (z) => (z > b[0] && z < b[1] ? 1 : 0) };
    }
    case 'HardSigmoid':
      return { name: 'HardSigmoid', slope: hardSigmoidSlope(attrFloat(n, 'alpha', 0.2), attrFloat(n, 'beta', 0.5)) };
    case 'HardSwish':
      return { name: 'HardSwish', slope: (z) => (z <= -3 ? 0 : z >= 3 ? 1 : (2 * z + 3) / 6) };
    case 'Sigmoid':
      return { name: 'Sigmoid', slope: (z) => sigmoid(z) * (1 - sigmoid(z)) };
    case 'Tanh':
      return { name: 'Tanh', slope: (z) => 1 - Math.tanh(z) ** 2 };
  }
  return undefined;
}

/** Relu(z) or Max(z, lo) followed by Min(·, hi) as the only reader, with constant (per-channel) bounds. */
function perChannelClip(view: GraphView, z: string, first: NodeProto, spatialDims: number): Activation | undefined {
  const mid = first.output[0];
  const min = view.uses(mid);
  if (min.length !== 1 || view.graphOutputs.has(mid) || min[0].opType !== 'Min') return undefined;
  const lo = first.opType === 'Relu' ? () => 0 : first.opType === 'Max' ? channelConstant(view, otherInput(first, z), spatialDims) : undefined;
  const hi = channelConstant(view, otherInput(min[0], mid), spatialDims);
  return lo && hi && { name: `${first.opType} → Min`, slope: (x, c) => (x > lo(c) && x < hi(c) ? 1 : 0) };
}

/**
 * The activation reading `z`, a layer output with `spatialDims` dims after its channel axis (a Conv's kernel rank;
 * 0 for Gemm/MatMul, whose channel is the last axis).
 */
export function activationSlope(view: GraphView, z: string, spatialDims = 0): Activation | undefined {
  if (view.graphOutputs.has(z)) return undefined;
  const uses = view.uses(z);
  if (uses.length === 1 && (uses[0].opType === 'Relu' || uses[0].opType === 'Max')) {
    const clip = perChannelClip(view, z, uses[0], spatialDims);
    if (clip) return clip;
  }
  if (uses.length === 1) return uses[0].input.length >= 1 && uses[0].input[0] === z ? unarySlope(view, uses[0]) : undefined;
  const gated = matchGated(view, z, spatialDims);
  if (!gated) return undefined;
  const { g, dg, post, gateScale } = gated;
  // out = post·z·g(s·z) → post·(g(s·z) + s·z·g′(s·z)); s = 1 without equalization's scale on the gate.
  const scaled: Slope = (x, c) => {
    const s = gateScale ? gateScale.at(c) : 1;
    return post * (g(s * x) + s * x * dg(s * x));
  };
  return { name: gated.name, slope: scaled };
}

/** A run of a layer's output channels, [start, end), read by a smooth saturating activation. */
export interface GateRun {
  start: number;
  end: number;
  /** The tensor the activation reads (the layer's output itself, or a Split piece of a sum it enters). */
  input: string;
  /** The piece's channels: its channel c′ is the layer's channel start + c′. */
  channels: number;
  /** The activation's name and σ'(z). */
  name: string;
  slope: (z: number) => number;
}

/** Sigmoid and Tanh: activations with no linear regime, whose slope vanishes on both sides. */
function smoothSaturating(n: NodeProto): Pick<GateRun, 'name' | 'slope'> | undefined {
  if (n.opType === 'Sigmoid') return { name: 'Sigmoid', slope: (z) => sigmoid(z) * (1 - sigmoid(z)) };
  if (n.opType === 'Tanh') return { name: 'Tanh', slope: (z) => 1 - Math.tanh(z) ** 2 };
  return undefined;
}

/** Split's piece sizes on its axis, when they are known from the graph: its `split` input (opset ≥ 13) or attribute,
 * or `num_outputs` equal pieces (opset 18: the last one smaller when the axis does not divide), else equal pieces. */
function splitSizes(view: GraphView, n: NodeProto, total: number): number[] | undefined {
  const pieces = n.output.length;
  const given = n.input[1] ? view.initializers.get(n.input[1]) : undefined;
  if (n.input[1] && !given) return undefined;
  const listed = given ? Array.from(decodeTensor(given).data as ArrayLike<number | bigint>, Number) : attrInts(n, 'split');
  if (listed) return listed.length === pieces && listed.reduce((a, b) => a + b, 0) === total ? listed : undefined;
  const size = Math.ceil(total / pieces);
  const sizes = Array.from({ length: pieces }, (_, i) => Math.max(0, Math.min(size, total - i * size)));
  return sizes.every((s) => s > 0) ? sizes : undefined;
}

/**
 * Where the output `y` of a layer with `channels` output channels on axis `axis` of a rank-`rank` tensor (axis =
 * rank − 1 for Gemm/MatMul) reaches only Sigmoid/Tanh: read by one directly, or through Adds of other tensors
 * (another layer's output, a bias) and a Split on the channel axis whose every piece is read by one — the gates of an
 * LSTM or GRU exported as nodes (silero_vad_op18_ifless: Gemm → Add → Split → Sigmoid, Sigmoid, Tanh, Sigmoid).
 * Bias correction weighs its mean shift by these activations' slopes (optimise/bias-correction.ts). Undefined for
 * any other reader: that includes a ReLU, whose linear side the plain mean suits.
 */
export function saturatingGates(view: GraphView, y: string, channels: number, axis: number, rank: number): GateRun[] | undefined {
  let z = y;
  for (let adds = 0; adds <= 4; adds++) {
    const uses = view.uses(z);
    if (uses.length !== 1 || view.graphOutputs.has(z)) return undefined;
    const n = uses[0];
    const act = smoothSaturating(n);
    if (act) return [{ start: 0, end: channels, input: z, channels, ...act }];
    if (n.opType === 'Add') {
      z = n.output[0];
      continue;
    }
    if (n.opType !== 'Split') return undefined;
    const a = attrInt(n, 'axis', 0);
    if ((a < 0 ? a + rank : a) !== axis) return undefined;
    const sizes = splitSizes(view, n, channels);
    if (!sizes) return undefined;
    const runs: GateRun[] = [];
    let start = 0;
    for (let i = 0; i < sizes.length; i++) {
      const piece = n.output[i];
      const readers = view.uses(piece);
      const pieceAct = readers.length === 1 && !view.graphOutputs.has(piece) ? smoothSaturating(readers[0]) : undefined;
      if (!pieceAct) return undefined;
      runs.push({ start, end: start + sizes[i], input: piece, channels: sizes[i], ...pieceAct });
      start += sizes[i];
    }
    return runs;
  }
  return undefined;
}
