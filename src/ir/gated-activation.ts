/**
 * Gated activations z·g(z) written as several nodes, with z read twice: SiLU/swish (Sigmoid + Mul), hard swish from
 * PyTorch before opset 14 (HardSigmoid + Mul) and Paddle's hard swish z·clip(z + a, lo, hi)/d (Add → Clip → Mul →
 * Div or Mul). Weight rounding reads their slope (optimise/activation-slope.ts); equalization scales z per channel
 * through them: with z = s·z′, z·g(z) = s·(z′·g(s·z′)), so the gate reads s·z′ through a per-channel Mul and the
 * product stays linear in z′ — which this matcher also recognises (`gateScale`), so the slope still reads after
 * equalization.
 */
import type { NodeProto } from 'onnx-buf';
import { clipBounds, constFloat, scalar } from './constants.ts';
import { attrFloat, type GraphView } from './graph.ts';

export interface GatedActivation {
  /** What was recognised, for reports. */
  name: string;
  /** The gate branch's first node after any scale: Sigmoid, HardSigmoid, or the Add of z + a. */
  gateReader: NodeProto;
  /** A per-channel factor on z at the gate's entrance (left by equalization): its Mul node and value per channel. */
  gateScale?: { node: NodeProto; at: (c: number) => number };
  /** The product z·gate. */
  mul: NodeProto;
  /** The activation's last node (the product or a constant factor after it) and so its output. */
  last: NodeProto;
  /** out = post · z · g(s·z) with s the gate scale (1 without): g and its derivative. */
  g: (x: number) => number;
  dg: (x: number) => number;
  post: number;
  /** The least value of z·g(z) over all real z (before `post` and without a gate scale), or undefined where it is
   * unbounded or not worked out. Calibration uses it as a lower bound of the product (ir/value-range.ts). */
  productMin?: number;
}

/** min over z of z·σ(z) (SiLU), at the root z ≈ −1.27846 of 1 + z·(1 − σ(z)) = 0, rounded down (checked by a scan
 * in the tests). */
export const SILU_MIN = -0.2784645427610738;

/**
 * The least value of z·clip(αz + β, lo, hi) over all real z, for α > 0; undefined where it is unbounded (lo > 0 or
 * hi < 0 make one end of the product fall without bound). The product is lo·z left of L = (lo − β)/α (decreasing
 * there, as lo ≤ 0), the convex αz² + βz on [L, R], and hi·z right of R = (hi − β)/α (increasing): so its minimum is
 * the parabola's at its vertex −β/(2α) clamped into [L, R].
 */
export function clippedAffineProductMin(alpha: number, beta: number, lo: number, hi: number): number | undefined {
  if (!(alpha > 0) || lo > 0 || hi < 0) return undefined;
  const z = Math.min((hi - beta) / alpha, Math.max((lo - beta) / alpha, -beta / (2 * alpha)));
  return alpha * z * z + beta * z;
}

export const sigmoid = (z: number) => 1 / (1 + Math.exp(-z));
export const hardSigmoid = (alpha: number, beta: number) => (z: number) => Math.min(1, Math.max(0, alpha * z + beta));
export const hardSigmoidSlope = (alpha: number, beta: number) => (z: number) => (alpha * z + beta > 0 && alpha * z + beta < 1 ? alpha : 0);

/** min over u of u·(1 + erf(u)), at u ≈ −0.5316 (GELU's least value is this over √2), rounded down. */
export const ERF_GATE_MIN = -0.2403756;

/**
 * The least value of z·(1 + erf(z/c)) when `mul` is that product in a GELU written as nodes (PyTorch's export before
 * opset 20: Div(z, c) → Erf → Add(·, 1) → Mul(z, ·) → Mul(·, ½)), or undefined. Only a bound (ir/value-range.ts):
 * matchGated does not return this form, so the recipes read no gate or slope from it.
 */
export function erfGateProductMin(view: GraphView, mul: NodeProto): number | undefined {
  if (mul.opType !== 'Mul' || mul.input.length !== 2) return undefined;
  for (const [z, gate] of [mul.input, [...mul.input].reverse()]) {
    const add = view.producer.get(gate);
    const erfOut = add?.opType === 'Add' ? add.input.find((i) => view.producer.get(i)?.opType === 'Erf') : undefined;
    if (!add || !erfOut || scalar(view, otherInput(add, erfOut)) !== 1) continue;
    const scaled = view.producer.get(view.producer.get(erfOut)!.input[0]);
    if (!scaled || scaled.input[0] !== z) continue;
    const k = scalar(view, scaled.input[1]);
    const c = k === undefined ? undefined : scaled.opType === 'Div' ? k : scaled.opType === 'Mul' ? 1 / k : undefined;
    if (c !== undefined && c > 0) return c * ERF_GATE_MIN;
  }
  return undefined;
}

/** The other input of a two-input node, when one input is `z`. */
export function otherInput(n: NodeProto, z: string): string | undefined {
  if (n.input.length !== 2) return undefined;
  return n.input[0] === z ? n.input[1] : n.input[1] === z ? n.input[0] : undefined;
}

/**
 * A constant of a per-channel operation on a tensor with `spatialDims` dims after the channel axis: a scalar, or C
 * values whose shape (leading 1s dropped) is [C, 1, …] with `spatialDims` trailing 1s, so that value c applies to
 * channel c. Undefined otherwise.
 */
export function channelConstant(view: GraphView, name: string | undefined, spatialDims: number): ((c: number) => number) | undefined {
  const b = name ? constFloat(view, name) : undefined;
  if (!b) return undefined;
  if (b.data.length === 1) return () => b.data[0];
  const dims = b.dims.slice(b.dims.findIndex((d) => d !== 1));
  if (dims.length !== spatialDims + 1 || dims.slice(1).some((d) => d !== 1)) return undefined;
  return (c) => b.data[c];
}

/** The only reader of `t`, when it has one and is not a graph output. */
function onlyReader(view: GraphView, t: string): NodeProto | undefined {
  const u = view.uses(t);
  return u.length === 1 && !view.graphOutputs.has(t) ? u[0] : undefined;
}

/** The gated activation reading `z` (a tensor with `spatialDims` dims after its channel axis), or undefined. */
export function matchGated(view: GraphView, z: string, spatialDims: number): GatedActivation | undefined {
  if (view.graphOutputs.has(z)) return undefined;
  const uses = view.uses(z);
  if (uses.length !== 2) return undefined;
  // The product's other input is the gate; a scale Mul's other input is a constant.
  const isScale = (n: NodeProto) => n.opType === 'Mul' && channelConstant(view, otherInput(n, z), spatialDims) !== undefined;
  const mul = uses.find((n) => n.opType === 'Mul' && otherInput(n, z) !== undefined && !isScale(n));
  let entry = uses.find((n) => n !== mul);
  if (!mul || !entry) return undefined;
  let gateIn = z;
  let gateScale: GatedActivation['gateScale'];
  if (isScale(entry)) {
    gateScale = { node: entry, at: channelConstant(view, otherInput(entry, z), spatialDims)! };
    gateIn = entry.output[0];
    entry = onlyReader(view, gateIn);
    if (!entry) return undefined;
  }
  if (entry.opType === 'Add' ? otherInput(entry, gateIn) === undefined : entry.input[0] !== gateIn) return undefined;
  let g: (x: number) => number;
  let dg: (x: number) => number;
  let gate: string;
  let name: string;
  let productMin: number | undefined;
  if (entry.opType === 'Sigmoid') {
    [g, dg, gate, name, productMin] = [sigmoid, (x) => sigmoid(x) * (1 - sigmoid(x)), entry.output[0], 'z·sigmoid(z)', SILU_MIN];
  } else if (entry.opType === 'HardSigmoid') {
    const [a, b] = [attrFloat(entry, 'alpha', 0.2), attrFloat(entry, 'beta', 0.5)];
    [g, dg, gate, name] = [hardSigmoid(a, b), hardSigmoidSlope(a, b), entry.output[0], 'z·hardsigmoid(z)'];
    productMin = clippedAffineProductMin(a, b, 0, 1);
  } else if (entry.opType === 'Add') {
    const a = scalar(view, otherInput(entry, gateIn));
    const clip = onlyReader(view, entry.output[0]);
    const bounds = clip?.opType === 'Clip' && clip.input[0] === entry.output[0] ? clipBounds(view, clip) : undefined;
    if (a === undefined || !clip || !bounds) return undefined;
    let scale = 1;
    gate = clip.output[0];
    const next = onlyReader(view, gate);
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
    const m = clippedAffineProductMin(1, a, lo, hi);
    productMin = m !== undefined && scale >= 0 ? scale * m : undefined;
  } else return undefined;
  if (otherInput(mul, z) !== gate || onlyReader(view, gate) !== mul) return undefined;
  // The constant factor may also follow the product (Paddle: Mul(z, clip) → Div(6)).
  const after = onlyReader(view, mul.output[0]);
  const d = after && (after.opType === 'Div' || after.opType === 'Mul') && after.input[0] === mul.output[0] ? scalar(view, after.input[1]) : undefined;
  const post = d === undefined ? 1 : after!.opType === 'Div' ? 1 / d : d;
  return { name, gateReader: entry, gateScale, mul, last: d === undefined ? mul : after!, g, dg, post, productMin: gateScale ? undefined : productMin };
}
