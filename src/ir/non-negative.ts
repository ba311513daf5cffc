/**
 * Which tensors of a graph are ≥ 0 for every input: a Relu's output, a ReLU6's, a softmax, and whatever only moves,
 * pools or combines such values. Calibration uses it to skip the lower statistic of these tensors, which enters the
 * scale only as min(lo, 0) = 0 (quant/numerics.ts `scaleFromRange`). Conservative: an op not listed, a graph input,
 * or a constant with a negative element gives "unknown". NaN is not considered (calibration data are finite).
 */
import type { GraphProto, NodeProto } from 'onnx-buf';
import { attrFloat, attrString, GraphView } from './graph.ts';
import { clipBounds, constFloat } from './constants.ts';

/** Output ≥ 0 whatever the input. */
const ALWAYS = new Set(['Relu', 'Sigmoid', 'HardSigmoid', 'Softmax', 'Abs', 'Exp', 'Softplus']);
/** Output 0 holds values of input 0 only (moved, selected, pooled by max or by a mean), so it is ≥ 0 when input 0 is. */
const FROM_DATA = new Set([
  'Identity', 'Reshape', 'Flatten', 'Transpose', 'Squeeze', 'Unsqueeze', 'Slice', 'Gather', 'Expand', 'Tile',
  'DepthToSpace', 'SpaceToDepth', 'MaxPool', 'AveragePool', 'GlobalAveragePool', 'GlobalMaxPool', 'ReduceMax',
  'ReduceMin', 'ReduceMean', 'Split',
]);
/** ≥ 0 when every (non-empty) input is: sums, products, quotients, concatenation, elementwise min. */
const FROM_ALL = new Set(['Concat', 'Add', 'Mul', 'Div', 'Min', 'Sum', 'Mean']);

export function nonNegativeTensors(graph: GraphProto): Set<string> {
  const view = new GraphView(graph);
  const known = new Set<string>();
  const isNonNegative = (name: string): boolean => {
    if (known.has(name)) return true;
    const c = constFloat(view, name);
    return c !== undefined && c.data.every((v) => v >= 0);
  };
  const holds = (n: NodeProto): boolean => {
    const op = n.domain === '' || n.domain === 'ai.onnx' ? n.opType : '';
    if (ALWAYS.has(op)) return true;
    if (FROM_DATA.has(op)) return isNonNegative(n.input[0]);
    if (FROM_ALL.has(op)) return n.input.filter((i) => i).every(isNonNegative);
    // Max(a, b, …) ≥ any one input.
    if (op === 'Max') return n.input.some((i) => i && isNonNegative(i));
    if (op === 'Clip') {
      const b = clipBounds(view, n);
      return (b !== undefined && b[0] >= 0) || isNonNegative(n.input[0]);
    }
    // Nearest and linear interpolation stay within the input's values; cubic overshoots.
    if (op === 'Resize' || op === 'Upsample') return attrString(n, 'mode', 'nearest') !== 'cubic' && isNonNegative(n.input[0]);
    if (op === 'Pad') {
      const mode = attrString(n, 'mode', 'constant');
      // The pad value: input 2 from opset 11 (absent = 0), the `value` attribute before.
      const value = n.input[2] ? constFloat(view, n.input[2]) : undefined;
      const padOk = mode !== 'constant' || (n.input[2] ? value !== undefined && value.data.every((v) => v >= 0) : attrFloat(n, 'value', 0) >= 0);
      return padOk && isNonNegative(n.input[0]);
    }
    return false;
  };
  // Monotone fixpoint: nodes are normally in topological order, so this ends after one or two sweeps.
  for (let changed = true; changed; ) {
    changed = false;
    for (const n of graph.node) {
      const outs = n.opType === 'MaxPool' ? n.output.slice(0, 1) : n.output;
      if (outs.every((o) => !o || known.has(o)) || !holds(n)) continue;
      for (const o of outs) if (o) known.add(o);
      changed = true;
    }
  }
  return known;
}
