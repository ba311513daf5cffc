/**
 * An interval that holds every value of a tensor for every input, worked out from the graph: Relu gives [0, ∞),
 * Sigmoid [0, 1], hard swish [−0.375, ∞), GELU [−0.17, ∞), and whatever moves, pools, clips, adds or multiplies
 * such tensors gets the interval arithmetic of its inputs. Calibration uses the lower end: a tensor ≥ 0 needs no
 * lower statistic, and one bounded below by −b needs none under a symmetric rule once its upper statistic reaches
 * b (calibrate/calibrate.ts). Conservative: an op not listed, a graph input, or a non-constant operand where a
 * constant is needed gives (−∞, ∞). NaN is not considered (calibration data are finite).
 *
 * The bounds are those of the real-number computation. A bound of 0 holds exactly in float32 as well (rounding
 * keeps signs); a nonzero finite bound can be passed by rounding in the last bits, so a user comparing against one
 * allows a relative margin (calibrate's BOUND_MARGIN).
 */
import type { GraphProto, NodeProto } from 'onnx-buf';
import { attrFloat, attrString, GraphView } from './graph.ts';
import { clipBounds, constFloat } from './constants.ts';
import { erfGateProductMin, matchGated } from './gated-activation.ts';

export interface ValueRange {
  lo: number;
  hi: number;
}

const ANY: ValueRange = { lo: -Infinity, hi: Infinity };

/** Output ranges that do not depend on the input. */
const FIXED: Record<string, ValueRange> = {
  Sigmoid: { lo: 0, hi: 1 },
  HardSigmoid: { lo: 0, hi: 1 },
  Softmax: { lo: 0, hi: 1 },
  Tanh: { lo: -1, hi: 1 },
  Exp: { lo: 0, hi: Infinity },
  Softplus: { lo: 0, hi: Infinity },
  Abs: { lo: 0, hi: Infinity },
  // x·relu6(x + 3)/6: least at x = −1.5.
  HardSwish: { lo: -0.375, hi: Infinity },
  // x·Φ(x), least ≈ −0.16997 (erf form) and −0.17004 (tanh approximation), rounded down over both.
  Gelu: { lo: -0.17005, hi: Infinity },
  // x·tanh(softplus(x)), least ≈ −0.308843.
  Mish: { lo: -0.30885, hi: Infinity },
};
/** Output 0 holds values of input 0 only (moved, selected, pooled by max or by a mean): the same range. */
const FROM_DATA = new Set([
  'Identity', 'Reshape', 'Flatten', 'Transpose', 'Squeeze', 'Unsqueeze', 'Slice', 'Gather', 'Expand', 'Tile',
  'DepthToSpace', 'SpaceToDepth', 'MaxPool', 'AveragePool', 'GlobalAveragePool', 'GlobalMaxPool', 'ReduceMax',
  'ReduceMin', 'ReduceMean', 'Split',
]);

const hull = (rs: ValueRange[]): ValueRange => ({ lo: Math.min(...rs.map((r) => r.lo)), hi: Math.max(...rs.map((r) => r.hi)) });
/** Product of two reals where one may be an infinite end of an interval of finite values: 0 times it is 0. */
const times = (a: number, b: number) => (a === 0 || b === 0 ? 0 : a * b);
function product(a: ValueRange, b: ValueRange): ValueRange {
  const c = [times(a.lo, b.lo), times(a.lo, b.hi), times(a.hi, b.lo), times(a.hi, b.hi)];
  return { lo: Math.min(...c), hi: Math.max(...c) };
}

/** The range of a constant's values; (−∞, ∞) for a non-float constant or one holding NaN. A loop, not
 * Math.min(...data): a constant may be an embedding table of millions of values. */
function constRange(data: Float32Array | undefined): ValueRange {
  if (!data?.length) return ANY;
  let [lo, hi] = [Infinity, -Infinity];
  for (const v of data) [lo, hi] = [Math.min(lo, v), Math.max(hi, v)];
  return Number.isNaN(lo) ? ANY : { lo, hi };
}

/** Every tensor of the graph with a finite bound on at least one side, and its range. */
export function valueRanges(graph: GraphProto): Map<string, ValueRange> {
  const view = new GraphView(graph);
  const known = new Map<string, ValueRange>();
  const constants = new Map<string, ValueRange>();
  const visiting = new Set<string>();
  const rangeOf = (name: string): ValueRange => {
    if (!name) return ANY;
    const got = known.get(name);
    if (got) return got;
    if (view.isConstant(name)) {
      let r = constants.get(name);
      if (!r) constants.set(name, (r = constRange(constFloat(view, name)?.data)));
      return r;
    }
    const n = view.producer.get(name);
    if (!n || visiting.has(name)) return ANY;
    visiting.add(name);
    const r = nodeRange(n, name);
    visiting.delete(name);
    known.set(name, r);
    return r;
  };
  const nodeRange = (n: NodeProto, out: string): ValueRange => {
    const op = n.domain === '' || n.domain === 'ai.onnx' ? n.opType : '';
    const ins = () => n.input.filter((i) => i).map(rangeOf);
    const x = () => rangeOf(n.input[0]);
    if (FIXED[op]) return FIXED[op];
    if (FROM_DATA.has(op)) return op === 'MaxPool' && out !== n.output[0] ? ANY : x();
    switch (op) {
      case 'Relu':
        return { lo: Math.max(x().lo, 0), hi: Math.max(x().hi, 0) };
      case 'Elu': {
        // x above 0, α(eˣ − 1) ∈ (−α, 0] below.
        const a = attrFloat(n, 'alpha', 1);
        return a >= 0 ? { lo: x().lo >= 0 ? x().lo : -a, hi: Math.max(x().hi, 0) } : ANY;
      }
      case 'Clip': {
        // Bounds that are not constants may lie outside the input's range, and the output takes them.
        const b = clipBounds(view, n);
        if (!b) return ANY;
        const [lo, hi] = b;
        return { lo: Math.min(Math.max(x().lo, lo), hi), hi: Math.max(Math.min(x().hi, hi), lo) };
      }
      // Nearest and linear interpolation stay within the input's values; cubic overshoots.
      case 'Resize':
      case 'Upsample':
        return attrString(n, 'mode', 'nearest') === 'cubic' ? ANY : x();
      case 'Pad': {
        const mode = attrString(n, 'mode', 'constant');
        if (mode !== 'constant') return x();
        // The pad value: input 2 from opset 11 (absent = 0), the `value` attribute before.
        const v = n.input[2] ? rangeOf(n.input[2]) : { lo: attrFloat(n, 'value', 0), hi: attrFloat(n, 'value', 0) };
        return hull([x(), v]);
      }
      case 'Concat':
      case 'Mean':
      case 'Where':
        return hull(op === 'Where' ? n.input.slice(1).map(rangeOf) : ins());
      case 'Max':
      case 'Min': {
        const rs = ins();
        const f = op === 'Max' ? Math.max : Math.min;
        return { lo: f(...rs.map((r) => r.lo)), hi: f(...rs.map((r) => r.hi)) };
      }
      case 'Add':
      case 'Sum':
        return ins().reduce((a, b) => ({ lo: a.lo + b.lo, hi: a.hi + b.hi }));
      case 'Sub': {
        const [a, b] = [rangeOf(n.input[0]), rangeOf(n.input[1])];
        return { lo: a.lo - b.hi, hi: a.hi - b.lo };
      }
      case 'Mul': {
        const generic = product(rangeOf(n.input[0]), rangeOf(n.input[1]));
        // z·g(z) with z read twice (SiLU, hard swish, GELU as nodes): bounded below although z is not.
        for (const z of new Set(n.input)) {
          const gated = matchGated(view, z, 0);
          if (gated?.mul === n && gated.productMin !== undefined) return { lo: Math.max(generic.lo, gated.productMin), hi: generic.hi };
        }
        const erf = erfGateProductMin(view, n);
        return erf === undefined ? generic : { lo: Math.max(generic.lo, erf), hi: generic.hi };
      }
      case 'Div': {
        const [a, b] = [rangeOf(n.input[0]), rangeOf(n.input[1])];
        // A divisor of one sign: the product with [1/hi, 1/lo]. A quotient of tensors ≥ 0 is ≥ 0 (or ∞).
        if (b.lo > 0 || b.hi < 0) return product(a, { lo: 1 / b.hi, hi: 1 / b.lo });
        return a.lo >= 0 && b.lo >= 0 ? { lo: 0, hi: Infinity } : ANY;
      }
      default:
        return ANY;
    }
  };
  for (const n of graph.node) for (const o of n.output) if (o) rangeOf(o);
  for (const [name, r] of known) if (r.lo === -Infinity && r.hi === Infinity) known.delete(name);
  return known;
}

/** The tensors that are ≥ 0 for every input. */
export function nonNegativeTensors(graph: GraphProto): Set<string> {
  return new Set([...valueRanges(graph)].filter(([, r]) => r.lo >= 0).map(([name]) => name));
}
