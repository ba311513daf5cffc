/**
 * The elementwise activation a layer's output feeds, as its derivative σ'(z). Weight rounding uses it to weigh each
 * output position by how much an error there survives the activation (first order: σ(ẑ) − σ(z) ≈ σ'(z)·(ẑ − z)), as
 * AdaRound's objective ‖σ(Wx) − σ(Ŵx)‖² does: after a ReLU the errors at inactive positions vanish, so fitting them
 * only spends the rounding's freedom where it cannot help.
 *
 * Recognised, on a tensor that is not a graph output: Relu, LeakyRelu, Clip with constant bounds (ReLU6), HardSigmoid,
 * HardSwish, Sigmoid, Tanh, and two decomposed forms with the tensor read twice — z·σ(z) (SiLU/swish: Sigmoid + Mul,
 * also with HardSigmoid) and Paddle's hard swish z·clip(z + a, lo, hi)/d (Add → Clip → Mul → Div or Mul). Anything
 * else (a residual Add, a second reader, a Conv) is linear to first order here and gets no slope. Also the
 * per-channel clip that equalization leaves where a ReLU6 stood, Relu (or Max with a constant) → Min with constant
 * per-channel bounds: its slope is 1 strictly between channel c's bounds, as for Clip.
 */
import type { NodeProto } from 'onnx-buf';
import { attrFloat, type GraphView } from '../ir/graph.ts';
import { clipBounds, constFloat, scalar } from '../ir/constants.ts';

/** σ'(z) at a position of output channel `channel` (only per-channel bounds, below, read it). */
export type Slope = (z: number, channel: number) => number;

export interface Activation {
  /** What was recognised, for the pass's report. */
  name: string;
  slope: Slope;
}

const sigmoid = (z: number) => 1 / (1 + Math.exp(-z));
const hardSigmoid = (alpha: number, beta: number) => (z: number) => Math.min(1, Math.max(0, alpha * z + beta));
const hardSigmoidSlope = (alpha: number, beta: number) => (z: number) => (alpha * z + beta > 0 && alpha * z + beta < 1 ? alpha : 0);

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

/** The other input of a two-input node, when one input is `z`. */
function other(n: NodeProto, z: string): string | undefined {
  if (n.input.length !== 2) return undefined;
  return n.input[0] === z ? n.input[1] : n.input[1] === z ? n.input[0] : undefined;
}

/** z·g(z) with g read from z through one node (Sigmoid, HardSigmoid) or Add(z, a) → Clip(lo, hi) [→ ÷d or ×1/d]. */
function gatedSlope(view: GraphView, z: string, gateFrom: NodeProto, mul: NodeProto): Activation | undefined {
  const only = (t: string) => (view.uses(t).length === 1 && !view.graphOutputs.has(t) ? view.uses(t)[0] : undefined);
  let g: (z: number) => number;
  let dg: (z: number) => number;
  let gate: string;
  let name: string;
  if (gateFrom.opType === 'Sigmoid') {
    [g, dg, gate, name] = [sigmoid, (x) => sigmoid(x) * (1 - sigmoid(x)), gateFrom.output[0], 'z·sigmoid(z)'];
  } else if (gateFrom.opType === 'HardSigmoid') {
    const [a, b] = [attrFloat(gateFrom, 'alpha', 0.2), attrFloat(gateFrom, 'beta', 0.5)];
    [g, dg, gate, name] = [hardSigmoid(a, b), hardSigmoidSlope(a, b), gateFrom.output[0], 'z·hardsigmoid(z)'];
  } else if (gateFrom.opType === 'Add') {
    const a = scalar(view, other(gateFrom, z));
    const clip = only(gateFrom.output[0]);
    const bounds = clip?.opType === 'Clip' && clip.input[0] === gateFrom.output[0] ? clipBounds(view, clip) : undefined;
    if (a === undefined || !clip || !bounds) return undefined;
    let scale = 1;
    gate = clip.output[0];
    const next = only(gate);
    // A constant factor on the gate: clip(z + a)·c.
    if (next && next !== mul && (next.opType === 'Div' || next.opType === 'Mul') && next.input[0] === gate) {
      const d = scalar(view, next.input[1]);
      if (d === undefined) return undefined;
      scale = next.opType === 'Div' ? 1 / d : d;
      gate = next.output[0];
    }
    const [lo, hi] = bounds;
    g = (x) => scale * Math.min(hi, Math.max(lo, x + a));
    dg = (x) => (x + a > lo && x + a < hi ? scale : 0);
    name = 'z·clip(z + a)';
  } else return undefined;
  if (other(mul, z) !== gate || only(gate) !== mul) return undefined;
  // The constant factor may also follow the product (Paddle: Mul(z, clip) → Div(6)).
  const after = only(mul.output[0]);
  const d = after && (after.opType === 'Div' || after.opType === 'Mul') && after.input[0] === mul.output[0] ? scalar(view, after.input[1]) : undefined;
  const post = d === undefined ? 1 : after!.opType === 'Div' ? 1 / d : d;
  return { name, slope: (x) => post * (g(x) + x * dg(x)) };
}

/**
 * A constant bound of a per-channel clip on a layer output with `spatialDims` dims after the channel axis: a scalar,
 * or C values whose shape (leading 1s dropped) is [C, 1, …] with `spatialDims` trailing 1s, so that value c
 * applies to channel c. Undefined otherwise.
 */
function channelBound(view: GraphView, name: string | undefined, spatialDims: number): ((c: number) => number) | undefined {
  const b = name ? constFloat(view, name) : undefined;
  if (!b) return undefined;
  if (b.data.length === 1) return () => b.data[0];
  const dims = b.dims.slice(b.dims.findIndex((d) => d !== 1));
  if (dims.length !== spatialDims + 1 || dims.slice(1).some((d) => d !== 1)) return undefined;
  return (c) => b.data[c];
}

/** Relu(z) or Max(z, lo) followed by Min(·, hi) as the only reader, with constant (per-channel) bounds. */
function perChannelClip(view: GraphView, z: string, first: NodeProto, spatialDims: number): Activation | undefined {
  const mid = first.output[0];
  const min = view.uses(mid);
  if (min.length !== 1 || view.graphOutputs.has(mid) || min[0].opType !== 'Min') return undefined;
  const lo = first.opType === 'Relu' ? () => 0 : first.opType === 'Max' ? channelBound(view, other(first, z), spatialDims) : undefined;
  const hi = channelBound(view, other(min[0], mid), spatialDims);
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
  if (uses.length !== 2) return undefined;
  const mul = uses.find((n) => n.opType === 'Mul' && other(n, z) !== undefined);
  const gateFrom = uses.find((n) => n !== mul);
  if (!mul || !gateFrom) return undefined;
  if (gateFrom.opType === 'Add' ? other(gateFrom, z) === undefined : gateFrom.input[0] !== z) return undefined;
  return gatedSlope(view, z, gateFrom, mul);
}
